"""Shadow worker Lambda: SQS of mirrored requests → the candidate (side effects off) → JSONL pairs in S3.

Idempotent: SQS delivers at least once. Each mirrored request is replayed on the candidate once per request id
(Powertools Idempotency on DynamoDB, ``IDEMPOTENCY_TABLE``); a redelivery gets the stored pair back without
invoking the candidate again. A pair may still be written twice (the batch's S3 write and a later redelivery);
``evalgate shadow-report`` keeps one pair per request id, so it is counted once.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from evalgate.adapters.lambda_runtime import (
    idempotent,
    is_sqs_batch,
    new_metrics,
    new_tracer,
    publish,
    version_dimensions,
)
from evalgate.contracts import telemetry as tm
from evalgate.contracts.service import ShadowMessage
from evalgate.release import shadow

logger = Logger()
tracer = new_tracer()
metrics = new_metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)  # bad records: DLQ, no raise
_state: dict[str, Any] = {}


def invoker() -> shadow.ShadowInvoker:
    if "invoker" not in _state:
        _state["invoker"] = shadow.ShadowInvoker(
            os.environ["SHADOW_FUNCTION_NAME"], os.environ.get("SHADOW_QUALIFIER") or "shadow"
        )
    return _state["invoker"]  # type: ignore[no-any-return]


def writer() -> shadow.PairWriter:
    if "writer" not in _state:
        _state["writer"] = shadow.PairWriter(os.environ["SHADOW_BUCKET"], os.environ.get("SHADOW_PREFIX") or "shadow")
    return _state["writer"]  # type: ignore[no-any-return]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if not is_sqs_batch(event):
        logger.error("not an SQS batch event", extra={"event_type": type(event).__name__})
        return {"batchItemFailures": [], "error": "unsupported event: expected an SQS batch ({'Records': [...]})"}
    pairs: list[dict[str, Any]] = []
    skipped = 0

    def replay_once(data: dict[str, Any]) -> dict[str, Any]:
        nonlocal skipped
        pair = shadow.replay(ShadowMessage.model_validate(data), invoker())
        if pair is None:
            skipped += 1  # the candidate is the version that answered: nothing to compare
        return {"pair": pair}

    once = idempotent(replay_once, key="request_id", expires_s=shadow.DEDUP_WINDOW_S, context=context)

    def record_handler(record: SQSRecord) -> None:
        try:
            msg = shadow.parse_message(record.body)
        except shadow.BadShadowMessage as exc:
            logger.error("unusable shadow message", extra={"message_id": record.message_id, "error": str(exc)})
            raise
        pair = once(data=msg.model_dump(mode="json"))["pair"]
        if pair is not None:
            pairs.append(pair)

    with processor(records=event["Records"], handler=record_handler, lambda_context=context):
        processor.process()
    if pairs:
        key = writer().write(pairs)  # raises: the whole batch is retried, nothing half-stored
        logger.info(
            "pairs stored",
            extra={"key": key, "pairs": len(pairs), "shadow_errors": sum(1 for p in pairs if p["shadow"]["error"])},
        )
    t = tm.Telemetry(version_dimensions())
    t.add(tm.SHADOW_PAIRS, len(pairs))
    t.add(tm.SHADOW_SKIPPED, skipped)
    publish(metrics, t)
    return dict(processor.response())
