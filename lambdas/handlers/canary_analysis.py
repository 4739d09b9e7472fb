"""CodeDeploy AfterAllowTraffic hook: canary judge of the new version vs the previous one; always reports.

Idempotent: the analysis runs once per ``LifecycleEventHookExecutionId`` (Powertools Idempotency on DynamoDB,
``IDEMPOTENCY_TABLE``); a redelivered invocation reports the stored outcome again, and CodeDeploy's
LifecycleEventAlreadyCompletedException counts as done; one arriving mid-run leaves the reporting to the first.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import CodeDeployLifecycleHookEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from evalgate.adapters.lambda_runtime import new_metrics, new_tracer, publish, version_dimensions
from evalgate.contracts import telemetry as tm
from evalgate.release import deploy_hooks as hooks
from evalgate.release.canary_samples import CloudWatchSamples

# Repository folders this function reads at run time, shipped in its asset (evalgate.engine.change_type): the
# golden set (gate config, smoke cases, knowledge) and the prompt templates.
REPOSITORY_DATA = ("prompts", "golden")

logger = Logger()
tracer = new_tracer()
metrics = new_metrics()
_reporter: hooks.CodeDeployReporter | None = None


def get_reporter() -> hooks.CodeDeployReporter:
    global _reporter
    if _reporter is None:
        _reporter = hooks.CodeDeployReporter()
    return _reporter


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=CodeDeployLifecycleHookEvent)
def handler(event: CodeDeployLifecycleHookEvent, context: LambdaContext) -> dict[str, Any]:
    def analyse(deadline: float) -> hooks.HookOutcome:
        settings = hooks.CanarySettings.from_env()
        fetcher = CloudWatchSamples(namespace=settings.namespace)
        return hooks.canary_analysis(
            settings, event.deployment_id, fetcher=fetcher, codedeploy=get_reporter().client, deadline=deadline
        )

    outcome = hooks.run_hook_in_lambda(
        event.raw_event, analyse, context, get_reporter(), logger, hooks.hook_once(context)
    )
    if isinstance(outcome, dict):
        return outcome
    t = tm.Telemetry(version_dimensions())
    t.add(tm.CANARY_PASSED, 1 if outcome.status == "Succeeded" else 0)
    if isinstance(outcome.details.get("score"), int | float):
        t.add(tm.CANARY_SCORE, float(outcome.details["score"]))
    publish(metrics, t)
    logger.info(
        "canary analysis done", extra={"status": outcome.status, "reason": outcome.reason, "analysis": outcome.details}
    )
    return {"status": outcome.status, "reason": outcome.reason}
