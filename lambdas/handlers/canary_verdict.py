"""Scheduled every minute: the canary verdict during the canary step (``evalgate.release.canary_live``), published as
``CanaryVerdict`` per new version for the deployment group's alarm. Raises when a deployment could not even be
attributed to a version, so the function's error alarm (also in the deployment group) stops it: fail closed.

Idempotent: a retried or duplicated scheduled invocation recomputes the verdict from the same metrics and
publishes the same 0/1 value for the minute; the alarm reads the per-minute Maximum, so a second data point
changes nothing."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from evalgate.adapters.lambda_runtime import publish_now
from evalgate.contracts import telemetry as tm
from evalgate.release.canary_live import LiveSettings, live_verdicts
from evalgate.release.canary_samples import CloudWatchSamples

# Repository folders this function reads at run time, shipped in its asset (evalgate.engine.change_type): the
# golden set (gate config, smoke cases, knowledge) and the prompt templates.
REPOSITORY_DATA = ("prompts", "golden")

logger = Logger()
_codedeploy: Any = None


def get_codedeploy() -> Any:
    global _codedeploy
    if _codedeploy is None:
        from evalgate.adapters.aws import ClientSettings, make_client

        _codedeploy = make_client("codedeploy", ClientSettings.from_env(max_attempts=5, read_timeout=10.0))
    return _codedeploy


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = LiveSettings.from_env()
    verdicts = live_verdicts(settings, codedeploy=get_codedeploy(), fetcher=CloudWatchSamples(namespace=tm.namespace()))
    publish_now(
        tm.Telemetry(tm.Dimensions(v.target), {tm.CANARY_VERDICT: [float(v.value)]}) for v in verdicts if v.target
    )
    for v in verdicts:
        logger.info(
            "canary verdict",
            extra={"deployment": v.deployment_id, "version": v.target, "baseline": v.baseline, "phase": v.phase,
                   "verdict": v.value, "reason": v.reason, "analysis": v.details},
        )  # fmt: skip
    orphans = [v.deployment_id for v in verdicts if not v.target]
    if orphans:
        raise RuntimeError(f"could not tell which version deployments {', '.join(orphans)} ship; failing closed")
    return {"verdicts": [{"deployment": v.deployment_id, "version": v.target, "verdict": v.value,
                          "phase": v.phase, "reason": v.reason} for v in verdicts]}  # fmt: skip
