"""The notifier: one email that explains a rollback, a failed pipeline or a gate that needs review.

Events (EventBridge):

- ``aws.codedeploy`` "CodeDeploy Deployment State-change Notification", state FAILURE or STOP;
- ``aws.appconfig`` deployment rollback ("On Deployment Rollback", extension type ``OnDeploymentRolledBack``);
- ``aws.codepipeline`` "CodePipeline Pipeline Execution State Change", state FAILED;
- ``evalgate`` "EvalGate Verdict" with verdict REVIEW (see ``gate_event_detail``).

The email says what was deployed (function version, model, prompt), which alarm or metric, the observed value
against its threshold with the sample size, the worst judged examples when they can be found, and console
links. Every lookup is best effort: what could not be read is said in the email, never a reason to send none.

Idempotent per EventBridge event id: ``notify`` takes a ``once`` wrapper (the handler's Powertools Idempotency
on DynamoDB) around composing and sending; a redelivered event gets the stored outcome and sends nothing. A
failure before the email went out leaves no record, so the retry can send it. An event it cannot use (not an
EventBridge event, a gate event with an invalid detail) raises ``NotifyEventError``: the handler logs and drops it.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalgate.contracts.events import GATE_DETAIL, GATE_SOURCE, GateVerdictDetail

CONSOLE = "console.aws.amazon.com"
R = TypeVar("R")
CODEDEPLOY_DETAIL = "CodeDeploy Deployment State-change Notification"
PIPELINE_DETAIL = "CodePipeline Pipeline Execution State Change"
SAMPLE_LABELS = {
    "QualityScore": "judged answers",
    "Hallucination": "judged answers",
    "JudgedCount": "judged answers",
    "Unscored": "judged answers",
    "InjectionLeak": "judged answers",
    "Latency": "requests",
    "TimeToFirstToken": "requests",
    "Errors": "requests",
    "FeedbackScore": "feedback events",
    "ConversionRate": "outcomes",
    "CanaryVerdict": "verdicts of the live canary judge (one a minute)",
    "Invocations": "runs of the live canary judge",
}
COMPARISONS = {
    "GreaterThanOrEqualToThreshold": ">=",
    "GreaterThanThreshold": ">",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
    "LessThanLowerOrGreaterThanUpperThreshold": "outside",
    "LessThanLowerThreshold": "<",
    "GreaterThanUpperThreshold": ">",
}


# ------------------------------------------------------------------------------------------------ events


class EventBridgeEvent(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    detail_type: str = Field(alias="detail-type", min_length=1)
    time: str = ""
    region: str = ""
    account: str = ""
    resources: list[str] = Field(default_factory=list)
    detail: dict[str, Any]


class NotifyEventError(ValueError):
    """Not an EventBridge event this notifier understands the shape of."""


def parse_event(event: Any) -> EventBridgeEvent:
    if not isinstance(event, Mapping):
        raise NotifyEventError(f"expected an EventBridge event (an object), got {type(event).__name__}")
    try:
        return EventBridgeEvent.model_validate(dict(event))
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise NotifyEventError(f"not an EventBridge event ({fields})") from None


# ------------------------------------------------------------------------------------------------ email model


@dataclass
class Email:
    subject: str
    body: str


@dataclass
class AlarmEvidence:
    name: str
    state: str
    since: str
    metric: str
    dimensions: dict[str, str]
    statistic: str
    period_s: int | None
    threshold: float | None
    comparison: str
    observed: float | None
    samples: int | None
    reason: str
    rule: str = ""  # the alarm's description: what it watches, and the minimum evidence it waits for

    @property
    def sample_label(self) -> str:
        return SAMPLE_LABELS.get(self.metric.split()[-1], "samples")


@dataclass
class Example:
    request_id: str
    quality: float | None
    hallucinated: bool | None
    question: str
    answer: str
    unsupported: list[str] = field(default_factory=list)


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


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ------------------------------------------------------------------------------------------------ lookups


class Lookup:
    """Best-effort reads from AWS. Each method returns None (and records a note) when it can't read."""

    def __init__(
        self,
        client: Callable[[str], Any],
        judge_log_group: str | None = None,
        query_timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        judged_bucket: str | None = None,
        judged_prefix: str = "judged/",
    ) -> None:
        self._client_factory = client
        self._clients: dict[str, Any] = {}
        self.judge_log_group = judge_log_group
        self.judged_bucket = judged_bucket
        self.judged_prefix = judged_prefix if not judged_prefix or judged_prefix.endswith("/") else judged_prefix + "/"
        self.query_timeout_s = query_timeout_s
        self._sleep = sleep
        self.notes: list[str] = []

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._client_factory(service)
        return self._clients[service]

    def _try(self, what: str, fn: Callable[[], R]) -> R | None:
        try:
            return fn()
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
            self.notes.append(f"could not read {what}: {code or type(exc).__name__}: {_clip(str(exc), 160)}")
            return None

    # CodeDeploy
    def deployment(self, deployment_id: str) -> dict[str, Any] | None:
        return cast(
            dict[str, Any] | None,
            self._try(
                f"CodeDeploy deployment {deployment_id}",
                lambda: self.client("codedeploy").get_deployment(deploymentId=deployment_id)["deploymentInfo"],
            ),
        )

    def group_alarms(self, application: str, group: str) -> list[str]:
        info = self._try(
            f"deployment group {group}",
            lambda: self.client("codedeploy").get_deployment_group(
                applicationName=application, deploymentGroupName=group
            )["deploymentGroupInfo"],
        )
        alarms = ((info or {}).get("alarmConfiguration") or {}).get("alarms") or []
        return [a["name"] for a in alarms if a.get("name")]

    # Lambda
    def function_env(self, function_name: str, version: str) -> dict[str, str]:
        cfg = self._try(
            f"configuration of {function_name}:{version}",
            lambda: self.client("lambda").get_function_configuration(FunctionName=function_name, Qualifier=version),
        )
        return dict(((cfg or {}).get("Environment") or {}).get("Variables") or {})

    # CloudWatch
    def alarms(self, names: list[str]) -> list[dict[str, Any]]:
        if not names:
            return []
        found = self._try(
            "alarms " + ", ".join(names),
            lambda: self.client("cloudwatch").describe_alarms(AlarmNames=names[:100]).get("MetricAlarms", []),
        )
        return list(found or [])

    def sample_count(self, alarm: dict[str, Any]) -> int | None:
        """SampleCount of the alarm's metric over its evaluation window ending at the last state change."""
        if not alarm.get("MetricName"):
            stats = [m for m in alarm.get("Metrics") or [] if m.get("MetricStat")]
            if not stats:
                return None
            ms = stats[0]["MetricStat"]
            metric, period = ms["Metric"], int(ms.get("Period") or 60)
        else:
            metric = {
                "Namespace": alarm["Namespace"],
                "MetricName": alarm["MetricName"],
                "Dimensions": alarm.get("Dimensions") or [],
            }
            period = int(alarm.get("Period") or 60)
        end = alarm.get("StateUpdatedTimestamp") or datetime.now(UTC)
        if isinstance(end, str):
            end = datetime.fromisoformat(end)
        window = period * int(alarm.get("EvaluationPeriods") or 1)
        start = end - timedelta(seconds=window)
        if (end - start).total_seconds() < 60:
            start = end - timedelta(seconds=60)

        def read() -> int:
            res = self.client("cloudwatch").get_metric_data(
                MetricDataQueries=[
                    {
                        "Id": "n",
                        "MetricStat": {"Metric": metric, "Period": period, "Stat": "SampleCount"},
                        "ReturnData": True,
                    }
                ],
                StartTime=start,
                EndTime=end + timedelta(seconds=1),
            )
            values: list[float] = [float(v) for r in res["MetricDataResults"] for v in r.get("Values", [])]
            return round(sum(values))

        return self._try(f"sample size of {alarm.get('AlarmName')}", read)

    def evidence(self, alarm: dict[str, Any]) -> AlarmEvidence:
        data: dict[str, Any] = {}
        try:
            data = json.loads(alarm.get("StateReasonData") or "{}")
        except ValueError:
            data = {}
        points = data.get("recentDatapoints") or []
        observed = float(points[-1]) if points else None
        if alarm.get("MetricName"):
            metric = f"{alarm.get('Namespace')} {alarm['MetricName']}"
            dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions") or []}
            stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic") or data.get("statistic") or "?"
            period = alarm.get("Period")
        else:
            first = next((m["MetricStat"] for m in alarm.get("Metrics") or [] if m.get("MetricStat")), None)
            metric = f"{first['Metric']['Namespace']} {first['Metric']['MetricName']}" if first else "metric math"
            dims = {d["Name"]: d["Value"] for d in (first or {}).get("Metric", {}).get("Dimensions", [])}
            stat, period = (first or {}).get("Stat", "?"), (first or {}).get("Period")
        since = alarm.get("StateUpdatedTimestamp")
        since_text = since.strftime("%Y-%m-%d %H:%M UTC") if isinstance(since, datetime) else str(since or "")
        return AlarmEvidence(
            name=alarm.get("AlarmName", "?"),
            state=alarm.get("StateValue", "?"),
            since=since_text,
            metric=metric,
            dimensions=dims,
            statistic=str(stat),
            period_s=int(period) if period else None,
            threshold=alarm.get("Threshold"),
            comparison=alarm.get("ComparisonOperator", ""),
            observed=observed,
            samples=self.sample_count(alarm),
            reason=alarm.get("StateReason", ""),
            rule=alarm.get("AlarmDescription") or "",
        )

    # Logs Insights (the online judge logs one line per judged answer)
    def worst_examples(self, version: str, since: datetime, limit: int = 3) -> list[Example] | None:
        """The lowest-quality judged answers of ``version`` since ``since``: from the judged records in S3
        (``JUDGED_BUCKET``) when configured, else from the online judge's logs (``JUDGE_LOG_GROUP``)."""
        if self.judged_bucket:
            return self._worst_from_s3(version, since, limit)
        group = self.judge_log_group
        if not group:
            self.notes.append("worst judged examples: neither JUDGED_BUCKET nor JUDGE_LOG_GROUP is configured")
            return None
        if not re.fullmatch(r"[\w$.-]+", version):
            return None
        query = (
            "fields request_id, quality, hallucinated, question, answer, unsupported_claims.0 as claim"
            f' | filter evalgate_judged = 1 and function_version = "{version}" and ispresent(quality)'
            f" | sort quality asc | limit {int(limit)}"
        )

        def run() -> list[Example]:
            logs = self.client("logs")
            qid = logs.start_query(
                logGroupName=group, queryString=query, startTime=int(since.timestamp()), endTime=int(time.time()) + 60
            )["queryId"]
            deadline = time.monotonic() + self.query_timeout_s
            while True:
                res = logs.get_query_results(queryId=qid)
                if res.get("status") in ("Complete", "Failed", "Cancelled", "Timeout"):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"Logs Insights query still {res.get('status')} after {self.query_timeout_s:.0f} s"
                    )
                self._sleep(0.5)
            out = []
            for row in res.get("results") or []:
                f = {c["field"]: c.get("value", "") for c in row}
                q = f.get("quality")
                out.append(
                    Example(
                        request_id=f.get("request_id", ""),
                        quality=float(q) if q not in (None, "") else None,
                        hallucinated={"1": True, "true": True, "0": False, "false": False}.get(
                            str(f.get("hallucinated", "")).lower()
                        ),
                        question=f.get("question", ""),
                        answer=f.get("answer", ""),
                        unsupported=[f["claim"]] if f.get("claim") else [],
                    )
                )
            return out

        return self._try(f"worst judged examples from {group}", run)

    def _worst_from_s3(self, version: str, since: datetime, limit: int, max_objects: int = 200) -> list[Example] | None:
        bucket, prefix = str(self.judged_bucket), f"{self.judged_prefix}version={version}/"

        def read() -> list[Example]:
            s3 = self.client("s3")
            keys: list[str] = []
            token: str | None = None
            while len(keys) < max_objects:
                kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
                if token:
                    kwargs["ContinuationToken"] = token
                page = s3.list_objects_v2(**kwargs)
                keys += [o["Key"] for o in page.get("Contents", []) if o.get("LastModified", since) >= since]
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    break
            rows: list[dict[str, Any]] = []
            for key in sorted(keys)[-max_objects:]:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
                for line in body.splitlines():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(row, dict) and isinstance(row.get("quality"), int | float):
                        rows.append(row)
            rows.sort(key=lambda r: (float(r["quality"]), not r.get("hallucinated")))
            return [
                Example(
                    request_id=str(r.get("request_id", "")),
                    quality=float(r["quality"]),
                    hallucinated=r.get("hallucinated") if isinstance(r.get("hallucinated"), bool) else None,
                    question=str(r.get("question", "")),
                    answer=str(r.get("answer", "")),
                    unsupported=[str(c) for c in (r.get("unsupported_claims") or [])][:2],
                )
                for r in rows[:limit]
            ]

        return self._try(f"worst judged examples from s3://{bucket}/{prefix}", read)

    # AppConfig
    def arms(self, target: str, current: str, since: datetime, until: datetime) -> tuple[Any, Any] | None:
        """Per-version samples of the previous and the new version over the deployment (``canary.ArmSamples``)."""
        from evalgate.release.canary import CloudWatchSamples

        def read() -> tuple[Any, Any]:
            cw = CloudWatchSamples(self.client("cloudwatch"))
            start = since.replace(second=0, microsecond=0)
            return cw.fetch(current, start, until), cw.fetch(target, start, until)

        return self._try(f"per-version metrics of versions {target} and {current}", read)

    def appconfig_deployment(self, app: str, env: str, number: int) -> dict[str, Any] | None:
        return cast(
            dict[str, Any] | None,
            self._try(
                f"AppConfig deployment {number}",
                lambda: self.client("appconfig").get_deployment(
                    ApplicationId=app, EnvironmentId=env, DeploymentNumber=number
                ),
            ),
        )

    def hosted_configuration(self, app: str, profile: str, version: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            res = self.client("appconfig").get_hosted_configuration_version(
                ApplicationId=app, ConfigurationProfileId=profile, VersionNumber=int(version)
            )
            content = res["Content"].read() if hasattr(res["Content"], "read") else res["Content"]
            doc = json.loads(content)
            return cast(dict[str, Any], doc) if isinstance(doc, dict) else None

        return self._try(f"configuration version {version}", read)

    # CodePipeline
    def failed_actions(self, pipeline: str, execution_id: str) -> list[dict[str, Any]]:
        res = self._try(
            f"actions of pipeline execution {execution_id}",
            lambda: (
                self.client("codepipeline")
                .list_action_executions(pipelineName=pipeline, filter={"pipelineExecutionId": execution_id})
                .get("actionExecutionDetails", [])
            ),
        )
        return [a for a in (res or []) if a.get("status") == "Failed"]


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
        lines.append(f"    Rule      {_clip(ev.rule, 300)}")
    if ev.reason:
        lines.append(f"    CloudWatch says: {_clip(ev.reason, 300)}")
    lines.append(f"    {link('alarm', ev.name)}")
    return lines


def _example_lines(examples: list[Example] | None, version: str) -> list[str]:
    if not examples:
        return [] if examples is None else [f"  (no judged answers of version {version} found in the judge's logs)"]
    lines = []
    for i, ex in enumerate(examples, start=1):
        flag = ", hallucinated" if ex.hallucinated else ""
        lines.append(f"  {i}. quality {_num(ex.quality, 2)}{flag}  (request {ex.request_id[:32]})")
        lines.append(f"     Q: {_clip(ex.question, 200)}")
        lines.append(f"     A: {_clip(ex.answer, 300)}")
        if ex.unsupported:
            lines.append(f"     Unsupported: {_clip('; '.join(ex.unsupported), 200)}")
    return lines


_BUSINESS_NAMES = {"FeedbackScore": "Thumbs-up share", "ConversionRate": "Conversion rate"}


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


def _appspec(info: Mapping[str, Any]) -> dict[str, Any]:
    content = ((info.get("revision") or {}).get("appSpecContent") or {}).get("content") or ""
    try:
        spec = json.loads(content)
        for resource in spec.get("Resources") or []:
            for value in resource.values():
                return dict(value.get("Properties") or {})
    except (ValueError, AttributeError):
        pass
    props = {}
    for key in ("Name", "Alias", "CurrentVersion", "TargetVersion"):
        m = re.search(rf"^\s*{key}\s*:\s*['\"]?([^'\"\s]+)", content, re.MULTILINE)
        if m:
            props[key] = m.group(1)
    return props


def _alarm_names_from(message: str) -> list[str]:
    m = re.search(r"[Aa]ctivated alarms?:\s*(.+)$", message.strip())
    if not m:
        return []
    return [n.strip(" .<>[]") for n in re.split(r"[,\s]+", m.group(1)) if n.strip(" .<>[]")]


def codedeploy_email(ev: EventBridgeEvent, lookup: Lookup, region: str) -> Email | None:
    d = ev.detail
    state = str(d.get("state", "")).upper()
    if state not in ("FAILURE", "STOP"):
        return None
    link = links(region)
    dep_id = str(d.get("deploymentId", ""))
    info = lookup.deployment(dep_id) or {}
    app, group = (
        d.get("application") or info.get("applicationName", "?"),
        d.get("deploymentGroup") or info.get("deploymentGroupName", "?"),
    )
    spec = _appspec(info)
    fn, alias = spec.get("Name"), spec.get("Alias")
    target, current = _s(spec.get("TargetVersion")), _s(spec.get("CurrentVersion"))
    env = lookup.function_env(str(fn), str(target)) if fn and target else {}
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
        lines.append(f"  Reason: {err.get('code', '?')}: {_clip(str(err.get('message', '')), 400)}")
    if rollback.get("rollbackMessage"):
        lines.append(f"  Rollback: {_clip(str(rollback['rollbackMessage']), 300)}")
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
        if arms is not None and any(e.metric.split()[-1] == "CanaryVerdict" for e in evidence):
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


def _s(x: Any) -> str | None:
    return str(x) if x not in (None, "") else None


def _pick(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        cur: Any = d
        for part in k.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        if cur not in (None, ""):
            return cur
    return None


def appconfig_email(ev: EventBridgeEvent, lookup: Lookup, region: str) -> Email | None:
    d = ev.detail
    kind = str(d.get("Type") or d.get("type") or ev.detail_type)
    if "rollback" not in kind.lower() and "rolledback" not in kind.lower().replace(" ", ""):
        return None
    link = links(region)
    app = _pick(d, "Application.Id", "ApplicationId", "applicationId") or "?"
    app_name = _pick(d, "Application.Name") or app
    env = _pick(d, "Environment.Id", "EnvironmentId", "environmentId") or "?"
    env_name = _pick(d, "Environment.Name") or env
    profile = _pick(d, "ConfigurationProfile.Id", "ConfigurationProfileId", "configurationProfileId")
    profile_name = _pick(d, "ConfigurationProfile.Name") or profile or "?"
    number = _pick(d, "DeploymentNumber", "deploymentNumber")
    version = _s(_pick(d, "ConfigurationVersion", "configurationVersion"))
    dep = lookup.appconfig_deployment(str(app), str(env), int(number)) if number is not None else None
    version = version or _s((dep or {}).get("ConfigurationVersion"))
    events = (dep or {}).get("EventLog") or []
    trigger = next((e for e in events if e.get("TriggeredBy") == "CLOUDWATCH_ALARM"), None)
    alarm_names = re.findall(
        r"arn:aws[\w-]*:cloudwatch:[^:]+:\d+:alarm:([^\s,]+)", str((trigger or {}).get("Description", ""))
    )
    evidence = [lookup.evidence(a) for a in lookup.alarms(alarm_names)]
    doc = lookup.hosted_configuration(str(app), str(profile), version) if profile and version else None
    subject = f"[evalgate] Flag rollout rolled back: {profile_name} v{version or '?'} in {env_name}"
    lines = [
        "What happened",
        f"  AppConfig deployment {number} of {profile_name} (application {app_name}, environment {env_name}) was "
        "rolled back.",
    ]
    if trigger:
        lines.append(f"  Triggered by {trigger.get('TriggeredBy')}: {_clip(str(trigger.get('Description', '')), 300)}")
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
        lines.append(f"  Deployment  {link('appconfig', str(app), str(env), str(number))}")
    return Email(subject, _finish(lines, ev, lookup))


def pipeline_email(ev: EventBridgeEvent, lookup: Lookup, region: str) -> Email | None:
    d = ev.detail
    if str(d.get("state", "")).upper() != "FAILED":
        return None
    link = links(region)
    pipeline, execution = str(d.get("pipeline", "?")), str(d.get("execution-id", "?"))
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
            lines.append(f"    {_clip(str(summary), 400)}")
        if result.get("externalExecutionUrl"):
            lines.append(f"    Details: {result['externalExecutionUrl']}")
    if any(str(a.get("stageName", "")).lower().startswith("eval") for a in failed):
        lines.append("  The quality gate failed: the report (summary.md / report.html) says which metrics and cases.")
    lines += ["", "Links", f"  Execution  {link('pipeline', pipeline, execution)}"]
    return Email(subject, _finish(lines, ev, lookup))


def gate_email(ev: EventBridgeEvent, lookup: Lookup, region: str) -> Email | None:
    try:
        detail = GateVerdictDetail.model_validate(ev.detail)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise NotifyEventError(f"not an EvalGate Verdict event detail ({fields})") from None
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
    lines += [f"  - {_clip(r, 300)}" for r in detail.reasons] or ["  (no reasons given)"]
    for a in detail.aggregates:
        op = ">=" if a.get("direction") == "min" else "<="
        lines.append(
            f"  {a.get('suite')}.{a.get('metric')}: {_num(a.get('value'))} vs threshold {op} "
            f"{_num(a.get('threshold'))}, n = {a.get('n')} cases ({a.get('status')})"
        )
    if detail.worst:
        lines += ["", "Worst cases"]
        for i, w in enumerate(detail.worst, start=1):
            lines.append(f"  {i}. {w.get('id')}: {_clip('; '.join(w.get('failures') or []), 200)}")
            lines.append(f"     Q: {_clip(str(w.get('question', '')), 200)}")
            lines.append(f"     A: {_clip(str(w.get('output', '')), 300)}")
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
    if ev.source == "aws.codedeploy" and ev.detail_type == CODEDEPLOY_DETAIL:
        return codedeploy_email(ev, lookup, region)
    if ev.source == "aws.appconfig":
        return appconfig_email(ev, lookup, region)
    if ev.source == "aws.codepipeline" and ev.detail_type == PIPELINE_DETAIL:
        return pipeline_email(ev, lookup, region)
    if ev.source == GATE_SOURCE and ev.detail_type == GATE_DETAIL:
        return gate_email(ev, lookup, region)
    return None


# ------------------------------------------------------------------------------------------------ sending


@dataclass
class NotifyResult:
    status: Literal["sent", "duplicate", "ignored"]
    subject: str = ""
    message_id: str = ""
    body: str = ""


Send = Callable[..., dict[str, Any]]


def notify(
    event: Any,
    *,
    lookup: Lookup,
    sns: Any,
    topic_arn: str,
    default_region: str,
    once: Callable[[Send], Send] | None = None,
) -> NotifyResult:
    """Compose and publish the email for one event; with ``once``, at most once per event id (``data.id``)."""
    ev = parse_event(event)
    bodies: list[str] = []  # filled only when this invocation composed the email (not on a redelivery)

    def send(data: dict[str, Any]) -> dict[str, Any]:
        email = compose(ev, lookup, default_region)
        bodies.append(email.body if email is not None else "")
        if email is None:
            return {"status": "ignored"}
        subject = sns_subject(email.subject)
        message_id = sns.publish(TopicArn=topic_arn, Subject=subject, Message=email.body)["MessageId"]
        return {"status": "sent", "subject": subject, "message_id": message_id}

    out = (once(send) if once is not None else send)(data={"id": ev.id})
    if not bodies:
        return NotifyResult("duplicate", str(out.get("subject") or ""), str(out.get("message_id") or ""))
    return NotifyResult(out["status"], out.get("subject", ""), out.get("message_id", ""), bodies[0])


def sns_subject(text: str) -> str:
    """SNS email subjects: printable ASCII, one line, at most 100 characters."""
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in " ".join(text.split()))
    return clean if len(clean) <= 100 else clean[:97] + "..."
