"""Notifier Lambda: EventBridge (CodeDeploy / AppConfig / CodePipeline / gate REVIEW) → one explanatory email.

Idempotent: EventBridge and Lambda's async invocation deliver at least once; the email is composed and sent
once per EventBridge event id (Powertools Idempotency on DynamoDB, ``IDEMPOTENCY_TABLE``); a redelivery sends
nothing. An event it cannot use is logged and dropped (it returns, so Lambda does not retry it); a failure to
send (SNS unavailable) raises, is retried by Lambda, then lands in the on-failure dead-letter queue.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from evalgate.adapters.lambda_runtime import idempotent, new_metrics, new_tracer, publish, version_dimensions
from evalgate.contracts import telemetry as tm
from evalgate.release.notify import notify
from evalgate.release.notify.events import NotifyEventError
from evalgate.release.notify.lookups import Lookup

logger = Logger()
tracer = new_tracer()
metrics = new_metrics()
_clients: dict[str, Any] = {}
EVENT_DEDUP_S = 7 * 24 * 3600  # longer than EventBridge's retries (24 h at most) and Lambda's async ones (6 h)


def client(service: str) -> Any:
    if service not in _clients:
        from evalgate.adapters.aws import ClientSettings, make_client

        _clients[service] = make_client(
            service,
            ClientSettings.from_env(connect_timeout=3.0, read_timeout=10.0, max_attempts=3, retry_mode="standard"),
        )
    return _clients[service]


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    topic = os.environ["TOPIC_ARN"]
    lookup = Lookup(
        client,
        judge_log_group=os.environ.get("JUDGE_LOG_GROUP") or None,
        judged_bucket=os.environ.get("JUDGED_BUCKET") or None,
        judged_prefix=os.environ.get("JUDGED_PREFIX") or "judged/",
    )
    try:
        result = notify(
            event,
            lookup=lookup,
            sns=client("sns"),
            topic_arn=topic,
            default_region=os.environ.get("AWS_REGION", "us-east-1"),
            once=lambda send: idempotent(send, key="id", expires_s=EVENT_DEDUP_S, context=context),
        )
    except NotifyEventError as exc:
        logger.error("malformed event; nothing sent", extra={"error": str(exc)})
        return {"status": "error", "error": str(exc)}
    t = tm.Telemetry(version_dimensions())
    t.add(tm.NOTIFICATIONS, 1 if result.status == "sent" else 0)
    publish(metrics, t)
    logger.info(
        "notifier done",
        extra={
            "status": result.status,
            "subject": result.subject,
            "message_id": result.message_id,
            "lookup_notes": lookup.notes,
        },
    )
    return {"status": result.status, "subject": result.subject, "message_id": result.message_id}
