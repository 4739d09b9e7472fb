"""The notifier's reads from AWS, every one best effort: what could not be read becomes a note for the email.

CodeDeploy (the deployment, its AppSpec and its group's alarms), Lambda (the version's model and prompt),
CloudWatch (the alarms, their sample sizes, the per-version canary metrics), the judged answers (the judged-records
store in S3, ``contracts.records.StoredRow``, or the online judge's logs via Logs Insights), AppConfig (the
rolled-back deployment and its flag document) and CodePipeline (the failed actions).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from evalgate.contracts import telemetry as tm
from evalgate.contracts.records import StoredRow
from evalgate.core.errors import clip
from evalgate.release.appspec import DeploymentVersions, appspec_versions

R = TypeVar("R")
# What one sample of each metric is (``contracts.telemetry``'s names; Invocations: the live judge's Lambda metric).
SAMPLE_LABELS = {
    **dict.fromkeys(
        (tm.QUALITY_SCORE, tm.HALLUCINATION, tm.JUDGED_COUNT, tm.UNSCORED, tm.INJECTION_LEAK), "judged answers"
    ),
    **dict.fromkeys((tm.LATENCY, tm.TIME_TO_FIRST_TOKEN, tm.ERRORS), "requests"),
    tm.FEEDBACK_SCORE: "feedback events",
    tm.CONVERSION_RATE: "outcomes",
    tm.CANARY_VERDICT: "verdicts of the live canary judge (one a minute)",
    "Invocations": "runs of the live canary judge",
}


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
            self.notes.append(f"could not read {what}: {code or type(exc).__name__}: {clip(str(exc), 160)}")
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

    @staticmethod
    def versions(info: Mapping[str, Any]) -> DeploymentVersions:
        """Function, alias and versions of a deployment read by ``deployment`` (its AppSpec)."""
        return appspec_versions(info)

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
            rows: list[StoredRow] = []
            for key in sorted(keys)[-max_objects:]:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
                rows += [row for line in body.splitlines() if (row := _judged_row(line)) is not None]
            rows.sort(key=lambda r: (float(r.quality or 0.0), not r.hallucinated))
            return [
                Example(
                    request_id=r.request_id,
                    quality=r.quality,
                    hallucinated=r.hallucinated,
                    question=r.question,
                    answer=r.answer,
                    unsupported=r.unsupported_claims[:2],
                )
                for r in rows[:limit]
            ]

        return self._try(f"worst judged examples from s3://{bucket}/{prefix}", read)

    def arms(self, target: str, current: str, since: datetime, until: datetime) -> tuple[Any, Any] | None:
        """Per-version samples of the previous and the new version over the deployment (``canary.ArmSamples``)."""
        from evalgate.release.canary_samples import CloudWatchSamples

        def read() -> tuple[Any, Any]:
            cw = CloudWatchSamples(self.client("cloudwatch"))
            start = since.replace(second=0, microsecond=0)
            return cw.fetch(current, start, until), cw.fetch(target, start, until)

        return self._try(f"per-version metrics of versions {target} and {current}", read)

    # AppConfig

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


def _judged_row(line: str) -> StoredRow | None:
    """A judged record with a quality score, or None for a line that is not one."""
    try:
        row = StoredRow.model_validate_json(line)
    except ValidationError:
        return None
    return row if row.quality is not None else None
