"""CloudWatch alarms on the NEW Lambda version's metrics only (dimension ``FunctionVersion`` = the version).

The handlers publish each alarm metric with a dimension set that is exactly ``[FunctionVersion]`` (namespace
``EvalGate/Service``), besides their richer drill-down sets. Never alarm on alias aggregates during a shift:
a bad canary at 10% would be diluted by the 90% still served by the old version.

Rollback alarms (missing data = not breaching: no evidence is not bad evidence):
    QualityScore avg < quality_min · Hallucination avg (= rate) > hallucination_max ·
    TimeToFirstToken p95 > ttftSloMs · Errors avg (= rate, 0/1 per request) > error_rate_max ·
    FeedbackScore avg < feedback_min, only in periods with >= feedback_min_answers distinct rated answers
    (metric math on the average and the SampleCount: each answer votes once, so the count is distinct answers;
    a handful of votes — one unhappy user — never rolls a release back)
Total answer time against the previous version cannot be an alarm: which version was live before is known
only at deployment time, not at synth. The AfterAllowTraffic canary analysis compares it (``Latency`` of both
versions, the +ms / +% rule of ``evalgate.core.latency``) and fails the deployment, which rolls it back.
Minimum-sample alarm (missing data = BREACHING: a canary nobody judged never promotes):
    JudgedCount sum over the canary window < min_judged_samples -- only where a canary analysis reads it
    (``min_judged_samples`` None for all-at-once stacks: there it would sit in ALARM with nothing to act on)
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.settings import AlarmThresholds

NAMESPACE = "EvalGate/Service"
VERSION_DIMENSION = "FunctionVersion"


@dataclass(frozen=True)
class QualityAlarmsProps:
    version: lambda_.IVersion
    thresholds: AlarmThresholds
    ttft_slo_ms: int  # p95 time to first token (evalgate.core.latency)
    min_judged_samples: int | None  # None: no canary analysis reads it, so no minimum-sample alarm
    window_minutes: int  # the canary interval: how long the new version gets to collect judged samples
    name_prefix: str
    namespace: str = NAMESPACE


class QualityAlarms(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: QualityAlarmsProps) -> None:
        super().__init__(scope, construct_id)
        self.dimensions = {VERSION_DIMENSION: props.version.version}
        t = props.thresholds
        period = Duration.minutes(t.period_minutes)

        def metric(name: str, statistic: str, period_: Duration = period) -> cw.Metric:
            return cw.Metric(
                namespace=props.namespace,
                metric_name=name,
                dimensions_map=self.dimensions,
                statistic=statistic,
                period=period_,
            )

        def alarm(
            cid: str,
            suffix: str,
            m: cw.IMetric,
            threshold: float,
            op: cw.ComparisonOperator,
            description: str,
            missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
            evaluation_periods: int = t.evaluation_periods,
        ) -> cw.Alarm:
            return cw.Alarm(
                self,
                cid,
                alarm_name=f"{props.name_prefix}-{suffix}",
                alarm_description=description,
                metric=m,
                threshold=threshold,
                comparison_operator=op,
                evaluation_periods=evaluation_periods,
                datapoints_to_alarm=evaluation_periods,
                treat_missing_data=missing,
            )

        self.quality = alarm(
            "QualityLow",
            "quality-low",
            metric("QualityScore", "Average"),
            t.quality_min,
            cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            f"Judged answer quality of the new version fell below {t.quality_min}",
        )
        self.hallucination = alarm(
            "HallucinationHigh",
            "hallucination-high",
            metric("Hallucination", "Average"),
            t.hallucination_max,
            cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            f"Hallucination rate of the new version exceeded {t.hallucination_max}",
        )
        self.latency = alarm(
            "TtftP95High",
            "ttft-p95-high",
            metric("TimeToFirstToken", "p95"),
            float(props.ttft_slo_ms),
            cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            f"p95 time to first token of the new version exceeded the {props.ttft_slo_ms} ms SLO",
        )
        self.errors = alarm(
            "ErrorRateHigh",
            "error-rate-high",
            metric("Errors", "Average"),
            t.error_rate_max,
            cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            f"Error rate of the new version exceeded {t.error_rate_max}",
        )
        minimum = t.feedback_min_answers
        feedback = cw.MathExpression(
            # below the minimum the expression reads 1 (the best score): too few votes never breach
            expression=f"IF(answers >= {minimum}, score, 1)",
            using_metrics={
                "score": metric("FeedbackScore", "Average"),
                "answers": metric("FeedbackScore", "SampleCount"),
            },
            label=f"FeedbackScore (average, when >= {minimum} rated answers)",
            period=period,
        )
        self.feedback = alarm(
            "FeedbackLow",
            "feedback-low",
            feedback,
            t.feedback_min,
            cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            f"User feedback score (thumbs-up share) of the new version below {t.feedback_min}, counted only in a "
            f"{t.period_minutes}-min period with at least {minimum} distinct rated answers (one vote per answer, "
            "signed request ids only)",
        )
        window = Duration.minutes(max(1, props.window_minutes))
        self.min_samples: cw.Alarm | None = None
        if props.min_judged_samples is not None:
            self.min_samples = alarm(
                "JudgedCountLow",
                "judged-count-low",
                metric("JudgedCount", "Sum", window),
                float(props.min_judged_samples),
                cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                f"Fewer than {props.min_judged_samples} judged answers for the new version in the last "
                f"{props.window_minutes} min (missing data breaches: an unjudged canary never promotes)",
                missing=cw.TreatMissingData.BREACHING,
                evaluation_periods=1,
            )
        self.rollback_alarms: list[cw.Alarm] = [
            self.quality,
            self.hallucination,
            self.latency,
            self.errors,
            self.feedback,
        ]
        self.all_alarms: list[cw.Alarm] = [*self.rollback_alarms, *filter(None, [self.min_samples])]
