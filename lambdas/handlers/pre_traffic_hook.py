"""CodeDeploy BeforeAllowTraffic hook: the golden smoke set against the new version; always reports a status.

Idempotent: CodeDeploy invokes hooks asynchronously, so Lambda may deliver one hook execution twice. The smoke
set runs once per ``LifecycleEventHookExecutionId`` (Powertools Idempotency on DynamoDB, ``IDEMPOTENCY_TABLE``);
a redelivery reports the stored outcome again and treats CodeDeploy's LifecycleEventAlreadyCompletedException
as done; one that arrives while the first run is going returns without reporting (the first run reports).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import CodeDeployLifecycleHookEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from evalgate.adapters.lambda_runtime import new_metrics, new_tracer, publish, version_dimensions
from evalgate.contracts import telemetry as tm
from evalgate.release import deploy_hooks as hooks

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


def smoke(deadline: float) -> hooks.HookOutcome:
    return hooks.pre_traffic_smoke(hooks.PreTrafficSettings.from_env(), deadline)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=CodeDeployLifecycleHookEvent)
def handler(event: CodeDeployLifecycleHookEvent, context: LambdaContext) -> dict[str, Any]:
    outcome = hooks.run_hook_in_lambda(
        event.raw_event, smoke, context, get_reporter(), logger, hooks.hook_once(context)
    )
    if isinstance(outcome, dict):
        return outcome
    t = tm.Telemetry(version_dimensions())
    t.add(tm.PRE_TRAFFIC_PASSED, 1 if outcome.status == "Succeeded" else 0)
    publish(metrics, t)
    logger.info("pre-traffic hook done", extra={"status": outcome.status, "reason": outcome.reason, **outcome.details})
    return {"status": outcome.status, "reason": outcome.reason}
