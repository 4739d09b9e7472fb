"""The canary judge's input, read from CloudWatch: one version's per-period series and counts
(``canary.ArmSamples``) with GetMetricData on the service's per-version metrics (``contracts.telemetry``), and the
state of an alarm."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from evalgate.contracts import telemetry as tm
from evalgate.release.canary import ArmSamples


@dataclass(frozen=True)
class _Query:
    id: str
    metric: str
    stat: str


_QUERIES = (
    _Query("quality", tm.QUALITY_SCORE, "Average"),
    _Query("scored", tm.QUALITY_SCORE, "SampleCount"),
    _Query("judged", tm.JUDGED_COUNT, "Sum"),
    _Query("unscored", tm.UNSCORED, "Sum"),
    _Query("hall_sum", tm.HALLUCINATION, "Sum"),
    _Query("hall_n", tm.HALLUCINATION, "SampleCount"),
    _Query("latency", tm.LATENCY, "Average"),
    _Query("requests", tm.ERRORS, "SampleCount"),
    _Query("errors", tm.ERRORS, "Sum"),
    _Query("fb_sum", tm.FEEDBACK_SCORE, "Sum"),
    _Query("fb_n", tm.FEEDBACK_SCORE, "SampleCount"),
    _Query("conv_sum", tm.CONVERSION_RATE, "Sum"),
    _Query("conv_n", tm.CONVERSION_RATE, "SampleCount"),
)


class CloudWatchSamples:
    """Reads one version's per-period series and counts with GetMetricData (dimension ``FunctionVersion`` only)."""

    def __init__(self, client: Any = None, namespace: str | None = None, period_s: int = 60) -> None:
        if client is None:
            from evalgate.adapters.aws import make_client

            client = make_client("cloudwatch")
        self.client = client
        self.namespace = namespace or tm.namespace()
        self.period_s = period_s

    def alarm_state(self, alarm_name: str) -> str:
        """OK, ALARM, INSUFFICIENT_DATA, or MISSING when no such alarm exists."""
        alarms = self.client.describe_alarms(AlarmNames=[alarm_name], AlarmTypes=["MetricAlarm"]).get(
            "MetricAlarms", []
        )
        return str(alarms[0]["StateValue"]) if alarms else "MISSING"

    def fetch(self, version: str, start: datetime, end: datetime) -> ArmSamples:
        queries = [
            {
                "Id": q.id,
                "MetricStat": {
                    "Metric": {
                        "Namespace": self.namespace,
                        "MetricName": q.metric,
                        "Dimensions": [{"Name": tm.DIM_VERSION, "Value": version}],
                    },
                    "Period": self.period_s,
                    "Stat": q.stat,
                },
                "ReturnData": True,
            }
            for q in _QUERIES
        ]
        series: dict[str, list[float]] = {q.id: [] for q in _QUERIES}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "MetricDataQueries": queries,
                "StartTime": start,
                "EndTime": end,
                "ScanBy": "TimestampAscending",
            }
            if token:
                kwargs["NextToken"] = token
            page = self.client.get_metric_data(**kwargs)
            for res in page.get("MetricDataResults", []):
                series.setdefault(res["Id"], []).extend(float(v) for v in res.get("Values", []))
            token = page.get("NextToken")
            if not token:
                break

        def total(key: str) -> int:
            return round(sum(series[key]))

        return ArmSamples(
            version=version,
            quality=series["quality"],
            latency=series["latency"],
            scored=total("scored"),
            judged=total("judged"),
            unscored=total("unscored"),
            hallucinations=total("hall_sum"),
            hallucination_n=total("hall_n"),
            errors=total("errors"),
            requests=total("requests"),
            feedback_up=total("fb_sum"),
            feedback_n=total("fb_n"),
            conversions=total("conv_sum"),
            conversion_n=total("conv_n"),
        )
