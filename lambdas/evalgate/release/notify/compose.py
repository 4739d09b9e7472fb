"""The notifier's email: what happened, what was deployed, why (alarms with their values, thresholds and sample
sizes, the canary's tests, the worst judged answers), console links, and what could not be read.

One function per event kind, each from the typed detail (``notify.events``) and the reads (``notify.lookups``);
``compose`` picks it. An event that needs no email (a successful deployment, a PASS) composes to None.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from evalgate.contracts import telemetry as tm
from evalgate.contracts.events import GateVerdictDetail
from evalgate.core.errors import clip
from evalgate.release.notify.events import (
    AppConfigRollback,
    CodeDeployStateChange,
    EventBridgeEvent,
    PipelineExecutionChange,
    parse_detail,
)
from evalgate.release.notify.lookups import AlarmEvidence, Example, Lookup

CONSOLE = "console.aws.amazon.com"
COMPARISONS = {
    "GreaterThanOrEqualToThreshold": ">=",
    "GreaterThanThreshold": ">",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
    "LessThanLowerOrGreaterThanUpperThreshold": "outside",
    "LessThanLowerThreshold": "<",
    "GreaterThanUpperThreshold": ">",
}


@dataclass
class Email:
    subject: str
    body: str


def links(region: str) -> Callable[..., str]:
    base = f"https://{region}.{CONSOLE}"

    def link(kind: str, *parts: str) -> str:
        q = [urllib.parse.quote(p, safe="") for p in parts]
        if kind == "deployment":
            return f"{base}/codesuite/codedeploy/deployments/{q[0]}?region={region}"
        if kind == "alarm":
            return f"{base}/cloudwatch/home?region={region}#alarmsV2:alarm/{q[0]}"
        if kind == "function":
            return f"{base}/lambda/home?region={region}#/functions/{q[0]}/versions/{q[1]}?tab=configuration"
        if kind == "logs":
            return f"{base}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{q[0]}"
        if kind == "appconfig":
            return (
                f"{base}/systems-manager/appconfig/applications/{q[0]}/environments/{q[1]}/deployments/{q[2]}"
                f"?region={region}"
            )
        if kind == "pipeline":
            return f"{base}/codesuite/codepipeline/pipelines/{q[0]}/executions/{q[1]}/timeline?region={region}"
        raise ValueError(kind)

    return link


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}g}"


# ------------------------------------------------------------------------------------------------ composition


def _alarm_lines(ev: AlarmEvidence, link: Callable[..., str]) -> list[str]:
    dims = ", ".join(f"{k}={v}" for k, v in ev.dimensions.items())
    period = f" over {ev.period_s // 60} min" if ev.period_s and ev.period_s >= 60 else ""
    op = COMPARISONS.get(ev.comparison, ev.comparison)
    samples = f", n = {ev.samples} {ev.sample_label}" if ev.samples is not None else ", sample size unknown"
    lines = [
        f"  {ev.name}: {ev.state}" + (f" since {ev.since}" if ev.since else ""),
        f"    Metric    {ev.metric} ({dims}), {ev.statistic}{period}",
        f"    Observed  {_num(ev.observed)}, threshold {_num(ev.threshold)} (alarms when {op} {_num(ev.threshold)})"
        f"{samples}",
    ]
    if ev.rule:
        lines.append(f"    Rule      {clip(ev.rule, 300)}")
    if ev.reason:
        lines.append(f"    CloudWatch says: {clip(ev.reason, 300)}")
    lines.append(f"    {link('alarm', ev.name)}")
    return lines


def _example_lines(examples: list[Example] | None, version: str) -> list[str]:
    if not examples:
        return [] if examples is None else [f"  (no judged answers of version {version} found in the judge's logs)"]
    lines = []
    for i, ex in enumerate(examples, start=1):
        flag = ", hallucinated" if ex.hallucinated else ""
        lines.append(f"  {i}. quality {_num(ex.quality, 2)}{flag}  (request {ex.request_id[:32]})")
        lines.append(f"     Q: {clip(ex.question, 200)}")
        lines.append(f"     A: {clip(ex.answer, 300)}")
        if ex.unsupported:
            lines.append(f"     Unsupported: {clip('; '.join(ex.unsupported), 200)}")
    return lines


_BUSINESS_NAMES = {tm.FEEDBACK_SCORE: "Thumbs-up share", tm.CONVERSION_RATE: "Conversion rate"}


def _business_lines(results: list[Any] | None) -> list[str]:
    """One line per business metric: both rates with their N, the effect in points, the test and its p-values."""
    if results is None:
        return ["  (not available)"]
    lines = []
    for r in results:
        name = _BUSINESS_NAMES.get(r.metric, r.metric)
        if r.status == "nodata":
            lines.append(f"  {name:<16} no outcomes reported (n = {r.n_canary} new / {r.n_baseline} previous)")
            continue
        verdict = "significantly worse" if r.status == "fail" else "no significant drop beyond tolerance"
        lines.append(
            f"  {name:<16} {r.canary:.1%} (n = {r.n_canary}) vs {r.baseline:.1%} (n = {r.n_baseline}): "
            f"{100 * (r.effect or 0.0):+.1f} points, one-sided p = {r.p_value:.2g} (Holm {r.p_adjusted:.2g}); {verdict}"
        )
    return lines


def _alarm_names_from(message: str) -> list[str]:
    m = re.search(r"[Aa]ctivated alarms?:\s*(.+)$", message.strip())
    if not m:
        return []
    return [n.strip(" .<>[]") for n in re.split(r"[,\s]+", m.group(1)) if n.strip(" .<>[]")]


def codedeploy_email(ev: EventBridgeEvent, d: CodeDeployStateChange, lookup: Lookup, region: str) -> Email | None:
    if not d.rolled_back:
        return None
    state = d.state.upper()
    link = links(region)
    dep_id = d.deployment_id
    info = lookup.deployment(dep_id) or {}
    app, group = (
        d.application or info.get("applicationName", "?"),
        d.deployment_group or info.get("deploymentGroupName", "?"),
    )
    spec = lookup.versions(info)
    fn, alias, target, current = spec.function_name, spec.alias, spec.target, spec.current
    env = lookup.function_env(fn, target) if fn and target else {}
    err = info.get("errorInformation") or {}
    rollback = info.get("rollbackInfo") or {}
    names = _alarm_names_from(str(err.get("message", "")))
    if not names and err.get("code") in (None, "", "ALARM_ACTIVE"):
        names = lookup.group_alarms(str(app), str(group))
    alarms = [a for a in lookup.alarms(names) if not names or a.get("StateValue") == "ALARM" or a["AlarmName"] in names]
    evidence = [lookup.evidence(a) for a in alarms]
    started = info.get("createTime")
    since = started if isinstance(started, datetime) else datetime.now(UTC) - timedelta(hours=3)
    examples = lookup.worst_examples(str(target), since) if target else None

    verb = "stopped and rolled back" if state == "STOP" else "failed and rolled back"
    headline = evidence[0].metric.split()[-1] + " alarm" if evidence else (err.get("code") or state).replace("_", " ")
    subject = f"[evalgate] Rolled back: {fn or app} v{target or '?'} ({headline})"
    lines = [
        "What happened",
        f"  CodeDeploy deployment {dep_id} (application {app}, group {group}) {verb}.",
    ]
    if err:
        lines.append(f"  Reason: {err.get('code', '?')}: {clip(str(err.get('message', '')), 400)}")
    if rollback.get("rollbackMessage"):
        lines.append(f"  Rollback: {clip(str(rollback['rollbackMessage']), 300)}")
    lines += [
        "",
        "What was deployed",
        f"  Function  {fn or '?'}" + (f", alias {alias}" if alias else ""),
        f"  Version   {target or '?'}" + (f" (replacing {current}; traffic is back on {current})" if current else ""),
        f"  Model     {env.get('MODEL_ID', 'unknown')}",
        f"  Prompt    {env.get('PROMPT_ID', 'unknown')}",
        "  (the version's defaults; AppConfig flags may have routed some cohorts to other variants)",
        "",
        "Why",
    ]
    if evidence:
        for e in evidence:
            lines += _alarm_lines(e, link)
    elif err.get("code") == "HOOK_EXECUTION_FAILURE":
        lines.append("  A lifecycle hook reported Failed (smoke set or canary analysis); see the hook's logs.")
    else:
        lines.append("  No alarm is in ALARM state for this deployment; see the deployment's events.")
    if target and current:
        from evalgate.release.canary import business_results, judge_canary

        ended = info.get("completeTime")
        arms = lookup.arms(target, current, since, ended if isinstance(ended, datetime) else datetime.now(UTC))
        if arms is not None and any(e.metric.split()[-1] == tm.CANARY_VERDICT for e in evidence):
            lines += ["", f"Canary analysis, version {target} vs {current} (the live judge's tests, whole deployment)"]
            lines += [f"  {r.metric}: {r.status} - {r.reason}" for r in judge_canary(*arms).results]
        lines += ["", f"Business outcomes, version {target} vs {current} (same window, the canary judge's tests)"]
        lines += _business_lines(business_results(*arms) if arms is not None else None)
    if target:
        lines += ["", f"Worst judged answers of version {target}"] + (
            _example_lines(examples, str(target)) or ["  (not available)"]
        )
    lines += ["", "Links", f"  Deployment  {link('deployment', dep_id)}"]
    if fn and target:
        lines.append(f"  Function    {link('function', str(fn), str(target))}")
    if lookup.judged_bucket and target:
        lines.append(f"  Judged      s3://{lookup.judged_bucket}/{lookup.judged_prefix}version={target}/")
    if lookup.judge_log_group:
        lines.append(f"  Judge logs  {link('logs', lookup.judge_log_group)}")
    return Email(subject, _finish(lines, ev, lookup))


def appconfig_email(ev: EventBridgeEvent, d: AppConfigRollback, lookup: Lookup, region: str) -> Email | None:
    if not d.rolled_back:
        return None
    link = links(region)
    app, app_name, env, env_name = d.application, d.application_name, d.environment, d.environment_name
    profile, profile_name, number = d.profile, d.profile_name, d.number
    dep = lookup.appconfig_deployment(app, env, number) if number is not None else None
    deployed = (dep or {}).get("ConfigurationVersion")
    version = d.version or (str(deployed) if deployed not in (None, "") else None)
    events = (dep or {}).get("EventLog") or []
    trigger = next((e for e in events if e.get("TriggeredBy") == "CLOUDWATCH_ALARM"), None)
    alarm_names = re.findall(
        r"arn:aws[\w-]*:cloudwatch:[^:]+:\d+:alarm:([^\s,]+)", str((trigger or {}).get("Description", ""))
    )
    evidence = [lookup.evidence(a) for a in lookup.alarms(alarm_names)]
    doc = lookup.hosted_configuration(app, profile, version) if profile and version else None
    subject = f"[evalgate] Flag rollout rolled back: {profile_name} v{version or '?'} in {env_name}"
    lines = [
        "What happened",
        f"  AppConfig deployment {number} of {profile_name} (application {app_name}, environment {env_name}) was "
        "rolled back.",
    ]
    if trigger:
        lines.append(f"  Triggered by {trigger.get('TriggeredBy')}: {clip(str(trigger.get('Description', '')), 300)}")
    lines += ["", "What was deployed", f"  Configuration version {version or '?'} of {profile_name}"]
    variants = ((doc or {}).get("variants") or {}).get("default") if doc else None
    if isinstance(variants, dict):
        rules = ((doc or {}).get("variant") or {}).get("rules") or {}
        for name, spec in variants.items():
            if isinstance(spec, dict):
                lines.append(f"  Variant {name}: model {spec.get('model_id')}, prompt {spec.get('prompt_id')}")
        for rule_name, rule in rules.items():
            lines.append(f"  Rule '{rule_name}' -> {rule.get('when_match')}")
    lines += ["", "Why"]
    if evidence:
        for e in evidence:
            lines += _alarm_lines(e, link)
    else:
        lines.append("  No alarm evidence found (rolled back by a person or by AppConfig itself).")
    lines += ["", "Links"]
    if number is not None:
        lines.append(f"  Deployment  {link('appconfig', app, env, str(number))}")
    return Email(subject, _finish(lines, ev, lookup))


def pipeline_email(ev: EventBridgeEvent, d: PipelineExecutionChange, lookup: Lookup, region: str) -> Email | None:
    if not d.failed:
        return None
    link = links(region)
    pipeline, execution = d.pipeline, d.execution_id
    failed = lookup.failed_actions(pipeline, execution)
    first = failed[0] if failed else {}
    where = f"{first.get('stageName')}/{first.get('actionName')}" if first else "unknown stage"
    subject = f"[evalgate] Pipeline failed: {pipeline} at {where}"
    lines = ["What happened", f"  Pipeline {pipeline}, execution {execution}, failed."]
    for a in failed:
        result = (a.get("output") or {}).get("executionResult") or {}
        lines.append(f"  {a.get('stageName')}/{a.get('actionName')}: {a.get('status')}")
        summary = result.get("externalExecutionSummary") or (result.get("errorDetails") or {}).get("message")
        if summary:
            lines.append(f"    {clip(str(summary), 400)}")
        if result.get("externalExecutionUrl"):
            lines.append(f"    Details: {result['externalExecutionUrl']}")
    if any(str(a.get("stageName", "")).lower().startswith("eval") for a in failed):
        lines.append("  The quality gate failed: the report (summary.md / report.html) says which metrics and cases.")
    lines += ["", "Links", f"  Execution  {link('pipeline', pipeline, execution)}"]
    return Email(subject, _finish(lines, ev, lookup))


def gate_email(ev: EventBridgeEvent, detail: GateVerdictDetail, lookup: Lookup, region: str) -> Email | None:
    if detail.verdict != "REVIEW":
        return None
    c = detail.candidate
    what = c.get("name") or c.get("model_id") or "candidate"
    subject = f"[evalgate] Needs review: {what} (gate run {detail.run_id or '?'})"
    lines = [
        "What happened",
        f"  The quality gate ({detail.tier or '?'} tier) could not decide and asks a person: verdict REVIEW.",
        "  The pipeline is waiting for manual approval.",
        "",
        "What was evaluated",
        f"  Candidate  {what}",
        f"  Model      {c.get('model_id') or 'unknown'}",
        f"  Prompt     {c.get('prompt_id') or 'unknown'}",
        "",
        "Why",
    ]
    lines += [f"  - {clip(r, 300)}" for r in detail.reasons] or ["  (no reasons given)"]
    for a in detail.aggregates:
        op = ">=" if a.get("direction") == "min" else "<="
        lines.append(
            f"  {a.get('suite')}.{a.get('metric')}: {_num(a.get('value'))} vs threshold {op} "
            f"{_num(a.get('threshold'))}, n = {a.get('n')} cases ({a.get('status')})"
        )
    if detail.worst:
        lines += ["", "Worst cases"]
        for i, w in enumerate(detail.worst, start=1):
            lines.append(f"  {i}. {w.get('id')}: {clip('; '.join(w.get('failures') or []), 200)}")
            lines.append(f"     Q: {clip(str(w.get('question', '')), 200)}")
            lines.append(f"     A: {clip(str(w.get('output', '')), 300)}")
    lines += ["", "Links"]
    if detail.report_url:
        lines.append(f"  Report     {detail.report_url}")
    if detail.pipeline and detail.execution_id:
        lines.append(f"  Approve    {links(region)('pipeline', detail.pipeline, detail.execution_id)}")
    return Email(subject, _finish(lines, ev, lookup))


def _finish(lines: list[str], ev: EventBridgeEvent, lookup: Lookup) -> str:
    if lookup.notes:
        lines += ["", "Not available"] + [f"  - {n}" for n in lookup.notes]
    lines += ["", f"Event {ev.id} ({ev.source} / {ev.detail_type}, {ev.time or 'time unknown'})"]
    return "\n".join(lines) + "\n"


def compose(ev: EventBridgeEvent, lookup: Lookup, default_region: str) -> Email | None:
    """The email for an event, or None when the event needs none (a successful deployment, a PASS)."""
    region = ev.region or default_region
    detail = parse_detail(ev)
    if isinstance(detail, CodeDeployStateChange):
        return codedeploy_email(ev, detail, lookup, region)
    if isinstance(detail, AppConfigRollback):
        return appconfig_email(ev, detail, lookup, region)
    if isinstance(detail, PipelineExecutionChange):
        return pipeline_email(ev, detail, lookup, region)
    if isinstance(detail, GateVerdictDetail):
        return gate_email(ev, detail, lookup, region)
    return None
