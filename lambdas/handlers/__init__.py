"""Thin Lambda entry points. Each module parses its event, calls one ``evalgate`` function and responds.

What they share (EMF publishing, the tracer, Powertools Idempotency, the SQS batch check) lives in
``evalgate.adapters.lambda_runtime``, where a service's own handler can use it too; the hooks' once-per-execution
guard is here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evalgate.adapters.lambda_runtime import idempotent

HOOK_DEDUP_S = 24 * 3600  # longer than any redelivery of a hook invocation (async retries end within 6 hours)


def hook_once(context: Any) -> Callable[[Any, Callable[[float], Any]], Callable[[float], Any]]:
    """``once`` for ``evalgate.release.deploy_hooks.run_hook``: the hook's work runs once per
    LifecycleEventHookExecutionId;
    a redelivery gets the stored outcome; one arriving mid-run raises ``HookAlreadyRunning``."""
    import json

    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

    from evalgate.release import deploy_hooks as hooks

    def once(hook: hooks.HookEvent, work: Callable[[float], hooks.HookOutcome]) -> Callable[[float], hooks.HookOutcome]:
        def guarded(deadline: float) -> hooks.HookOutcome:
            def run(data: dict[str, Any]) -> dict[str, Any]:
                o = work(deadline)
                details = json.loads(json.dumps(o.details, default=str))
                return {"status": o.status, "reason": o.reason, "details": details}

            fn = idempotent(run, key="LifecycleEventHookExecutionId", expires_s=HOOK_DEDUP_S, context=context)
            try:
                stored = fn(data={"LifecycleEventHookExecutionId": hook.LifecycleEventHookExecutionId})
            except IdempotencyAlreadyInProgressError:
                raise hooks.HookAlreadyRunning(hook.LifecycleEventHookExecutionId) from None
            return hooks.HookOutcome(stored["status"], stored["reason"], dict(stored.get("details") or {}))

        return guarded

    return once
