"""The gate's verdict event: what the quality gate puts on EventBridge and the notifier reads.

Source ``evalgate``, detail-type ``EvalGate Verdict``; the detail is :class:`GateVerdictDetail`, built from a run by
:func:`gate_event_detail`. EventBridge rules in the stacks match the same two strings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GATE_SOURCE = "evalgate"
GATE_DETAIL = "EvalGate Verdict"


class GateVerdictDetail(BaseModel):
    """``detail`` of the ``evalgate`` / ``EvalGate Verdict`` event the pipeline emits after a gate run."""

    model_config = ConfigDict(extra="allow")

    verdict: Literal["PASS", "FAIL", "REVIEW", "ERROR"]
    run_id: str = ""
    tier: str = ""
    candidate: dict[str, Any] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
    aggregates: list[dict[str, Any]] = Field(default_factory=list)
    worst: list[dict[str, Any]] = Field(default_factory=list)
    report_url: str | None = None
    pipeline: str | None = None
    execution_id: str | None = None


def gate_event_detail(
    result: Any, *, report_url: str | None = None, pipeline: str | None = None, execution_id: str | None = None
) -> dict[str, Any]:
    """Build the ``EvalGate Verdict`` detail from a ``RunResult`` (for ``events.put_events``)."""
    worst = sorted(
        (c for c in result.cases if c.status != "pass"),
        key=lambda c: min((m.value for m in c.metrics.values() if m.value is not None), default=1.0),
    )[:3]
    detail = GateVerdictDetail(
        verdict=result.verdict.verdict,
        run_id=result.run_id,
        tier=result.tier,
        candidate={k: v for k, v in result.candidate.items() if isinstance(v, str | int | float | bool | None)},
        reasons=list(result.verdict.reasons[:8]),
        aggregates=[
            {
                "metric": a.metric,
                "suite": a.suite,
                "value": a.value,
                "threshold": a.threshold,
                "direction": a.direction,
                "n": a.n,
                "status": a.status,
            }
            for a in result.aggregates
            if a.status in ("fail", "borderline", "insufficient")
        ][:8],
        worst=[
            {"id": c.id, "question": c.question[:300], "output": (c.output or "")[:500], "failures": c.failures[:3]}
            for c in worst
        ],
        report_url=report_url,
        pipeline=pipeline,
        execution_id=execution_id,
    )
    return detail.model_dump(mode="json")
