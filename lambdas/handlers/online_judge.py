"""Online judge Lambda: SQS batches of captured answers → judge (and the guardrail's contextual grounding check, when
the capture names a guardrail) → EMF metrics per answering version.

Idempotent: SQS delivers at least once, so each capture is judged and counted once per capture id (the
service's ``request_id``) with Powertools Idempotency on DynamoDB (``IDEMPOTENCY_TABLE``), for as long as the
capture queue keeps a message. A redelivered capture gets the stored outcome and publishes nothing, so
``JudgedCount`` / ``QualityScore`` of a canary version are not inflated. The metrics of a batch are published
after its records are processed: if the function dies in between, those captures count zero times (fewer
judged samples: the canary cannot promote on them), never twice. A record that is not a capture fails alone
(partial batch response) and ends in the queue's DLQ.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from evalgate.adapters.lambda_runtime import idempotent, is_sqs_batch, new_tracer, publish_now
from evalgate.contracts.service import CaptureRecord
from evalgate.core.knowledge import KnowledgeIndex, load_index
from evalgate.release import online

logger = Logger()
tracer = new_tracer()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)  # bad records: DLQ, no raise
_state: dict[str, Any] = {}
RESERVE_S = 10.0  # invocation time kept for publishing metrics after the last judgement


def index() -> KnowledgeIndex:
    if "index" not in _state:
        _state["index"], problems = load_index()
        if problems:
            logger.warning("knowledge base problems", extra={"problems": problems[:10]})
    return _state["index"]  # type: ignore[no-any-return]


def judge() -> Any:
    if "judge" not in _state:
        model_id = os.environ.get("JUDGE_MODEL_ID")
        if not model_id:
            logger.error("JUDGE_MODEL_ID is not set: answers get rule checks only and count as Unscored")
            _state["judge"] = None
        else:
            from evalgate.adapters.bedrock import BedrockJudgeModel
            from evalgate.core.retry import RetryPolicy
            from evalgate.engine.judge import Judge

            # Records are judged one at a time; each invocation bounds the retries by its remaining time.
            _state["judge"] = Judge(BedrockJudgeModel(model_id), policy=RetryPolicy(1, time_budget=None))
    return _state["judge"]


def guardrail(guardrail_id: str, version: str) -> Any:
    """The ApplyGuardrail checker for the guardrail a capture names (its contextual grounding check), kept warm."""
    key = f"guardrail:{guardrail_id}:{version}"
    if key not in _state:
        from evalgate.engine.guardrails import GuardrailChecker

        _state[key] = GuardrailChecker(guardrail_id, version)
    return _state[key]


def policy() -> online.SamplingPolicy:
    """Judge rates per version from the service alias' traffic weights (equal rates when unknown)."""
    name = os.environ.get("SERVICE_FUNCTION_NAME")
    max_rate = float(os.environ.get("JUDGE_SAMPLE_RATE") or 1.0)
    if not name:
        return online.SamplingPolicy(None, max_rate)
    if "weights" not in _state:
        from evalgate.adapters.aws import make_client

        _state["weights"] = online.AliasWeights(make_client("lambda"), name, os.environ.get("SERVICE_ALIAS") or "live")
    return online.SamplingPolicy(_state["weights"].get(), max_rate)


def open_live_tickets(rows: list[dict[str, Any]]) -> None:
    """A ticket per hallucinated live answer (deduplicated by question and claims); never fails the batch."""
    from evalgate.release.tickets import OpsCenterTickets, live_finding

    for row in rows:
        if row.get("hallucinated") is not True:
            continue
        try:
            if "tickets" not in _state:
                _state["tickets"] = OpsCenterTickets()
            finding = live_finding(
                str(row.get("question", "")),
                str(row.get("answer", "")),
                [str(c) for c in row.get("unsupported_claims") or []],
            )
            keys = ("request_id", "function_version", "model_id", "prompt_version")
            context = {k: str(row.get(k) or "") for k in keys}
            ticket = _state["tickets"].open(finding, context)
            logger.info("known-error ticket", extra={"ticket": ticket.id, "created": ticket.created})
        except Exception as exc:
            logger.warning("could not open a known-error ticket", extra={"error": f"{type(exc).__name__}: {exc}"})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if not is_sqs_batch(event):
        logger.error("not an SQS batch event", extra={"event_type": type(event).__name__})
        return {"batchItemFailures": [], "error": "unsupported event: expected an SQS batch ({'Records': [...]})"}
    judged: list[online.JudgedRecord] = []
    rates = policy()
    canary = os.environ.get("CANARY_TOKEN") or None
    if judge() is not None:  # retry a throttled judgement while the invocation has time, keeping a margin
        judge().policy.set_time_budget(max(1.0, context.get_remaining_time_in_millis() / 1000 - RESERVE_S))

    rows: list[dict[str, Any]] = []

    def judge_once(data: dict[str, Any]) -> dict[str, Any]:
        capture = CaptureRecord.model_validate(data)
        result = online.judge_capture(
            capture, index(), judge(), canary_token=canary, policy=rates, guardrails=guardrail
        )
        judged.append(result)
        row = online.stored_row(capture, result)
        if row is not None:
            rows.append(row)
            if result.judged:
                logger.info("judged", extra=row)
        return {"request_id": result.request_id, "judged": result.judged, "skipped": result.skipped}

    once = idempotent(judge_once, key="request_id", expires_s=online.DEDUP_WINDOW_S, context=context)

    def record_handler(record: SQSRecord) -> None:
        try:
            capture = online.parse_capture(record.body)
        except online.BadCaptureRecord as exc:
            logger.error("unusable capture record", extra={"message_id": record.message_id, "error": str(exc)})
            raise
        once(data=capture.model_dump(mode="json"))

    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    publish_now(r.telemetry() for r in judged)
    bucket = os.environ.get("JUDGED_BUCKET")
    if bucket and rows:
        try:  # best effort: the metrics are out; a redelivered capture is not judged or stored again
            if "writer" not in _state:
                _state["writer"] = online.JudgedWriter(bucket, os.environ.get("JUDGED_PREFIX") or "judged/")
            _state["writer"].write(rows)
        except Exception as exc:
            logger.warning("could not store judged records", extra={"error": f"{type(exc).__name__}: {exc}"})
    if os.environ.get("KNOWN_ERROR_TICKETS") == "opscenter":
        open_live_tickets(rows)
    logger.info(
        "batch done",
        extra={
            "records": len(event["Records"]),
            "judged": sum(r.judged for r in judged),
            "failed": len(response.get("batchItemFailures", [])),
        },
    )
    return dict(response)
