"""CloudWatch dashboard: quality metrics per Lambda version, side by side, plus the alarm states.

Graphs use ``SEARCH`` over the ``{FunctionVersion}`` dimension set, so every version that served traffic
gets its own line without redeploying the dashboard: during a canary the old and new version are compared.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from stacks.constructs.quality_alarms import VERSION_DIMENSION


@dataclass(frozen=True)
class DashboardProps:
    dashboard_name: str
    namespace: str
    alarms: list[cw.IAlarm]
    period_minutes: int = 5


def _per_version(namespace: str, metric: str, stat: str, period: Duration, label: str) -> cw.MathExpression:
    return cw.MathExpression(
        expression=(
            f"SEARCH('{{{namespace},{VERSION_DIMENSION}}} MetricName=\"{metric}\"', '{stat}', "
            f"{int(period.to_seconds())})"
        ),
        label=label,
        using_metrics={},
        period=period,
    )


class QualityDashboard(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: DashboardProps) -> None:
        super().__init__(scope, construct_id)
        period = Duration.minutes(props.period_minutes)
        ns = props.namespace

        def graph(title: str, metric: str, stat: str, unit_label: str) -> cw.GraphWidget:
            return cw.GraphWidget(
                title=f"{title} per version",
                left=[_per_version(ns, metric, stat, period, unit_label)],
                width=12,
                height=6,
                period=period,
            )

        self.dashboard = cw.Dashboard(
            self, "Dashboard", dashboard_name=props.dashboard_name, default_interval=Duration.hours(6)
        )
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown=(
                    f"# {props.dashboard_name}\nOne line per Lambda version (`{VERSION_DIMENSION}`). During a "
                    "canary the new version is the one with the highest number; its alarms roll it back."
                ),
                width=24,
                height=2,
            ),
        )
        self.dashboard.add_widgets(
            graph("Judged quality (avg)", "QualityScore", "Average", "QualityScore"),
            graph("Hallucination rate", "Hallucination", "Average", "Hallucination"),
        )
        self.dashboard.add_widgets(
            graph("Time to first token p95 (ms)", "TimeToFirstToken", "p95", "p95 ms"),
            graph("Total answer time p95 (ms)", "Latency", "p95", "p95 ms"),
        )
        self.dashboard.add_widgets(graph("Error rate", "Errors", "Average", "Errors"))
        self.dashboard.add_widgets(
            graph("Judged answers", "JudgedCount", "Sum", "JudgedCount"),
            graph("Unscored judgements", "Unscored", "Sum", "Unscored"),
        )
        self.dashboard.add_widgets(
            graph("User feedback (avg)", "FeedbackScore", "Average", "FeedbackScore"),
            graph("Prompt-injection leaks", "InjectionLeak", "Sum", "InjectionLeak"),
        )
        self.dashboard.add_widgets(  # the guardrail's contextual grounding check of judged answers (when it has one)
            graph("Guardrail grounding score (avg)", "GuardrailGrounding", "Average", "GuardrailGrounding"),
            graph("Guardrail relevance score (avg)", "GuardrailRelevance", "Average", "GuardrailRelevance"),
        )
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Quality alarms (new version)", alarms=props.alarms, width=24, height=4),
        )
