"""Service Lambda: HTTP API v2 / function URL (``POST /ask``, ``POST /feedback``) and direct shadow invokes.

Routing is two routes, so it is done here on the Powertools ``APIGatewayProxyEventV2`` data class rather than
with the REST resolver (whose import costs a third of a boto3 import on the cold-start path).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from evalgate.adapters.lambda_runtime import new_metrics, new_tracer, publish, version_dimensions
from evalgate.contracts import telemetry as tm
from evalgate.contracts.records import DIRECT_KEY
from store_assistant import service as core

logger = Logger()
tracer = new_tracer()
metrics = new_metrics()

_service: core.Service | None = None


def get_service() -> core.Service:
    """Built on first use, then reused by warm invocations (clients, prompts and the index are cached)."""
    global _service
    if _service is None:
        _service = core.Service.from_env(logger)
    return _service


def route(event: APIGatewayProxyEventV2) -> core.HttpOutcome:
    stage = event.request_context.stage
    path = event.raw_path or event.request_context.http.path
    if stage and stage != "$default" and path.startswith(f"/{stage}/"):
        path = path[len(stage) + 1 :]
    method = event.request_context.http.method.upper()
    routes = {"/ask": "ask", "/feedback": "feedback"}
    if path.rstrip("/") not in routes:
        return core.error(404, f"no such route {path!r}: use POST /ask or POST /feedback")
    if method != "POST":
        return core.error(405, f"{method} is not allowed on {path}: use POST", retry_after=None)
    body = core.http_body(event.body, bool(event.is_base64_encoded))  # bad base64 / oversize: 400 / 413, not 500
    if isinstance(body, core.HttpOutcome):
        return body
    if routes[path.rstrip("/")] == "ask":
        return get_service().ask(body, event.headers)
    return get_service().feedback(body)


def _respond(outcome: core.HttpOutcome) -> dict[str, Any]:
    publish(metrics, outcome.telemetry)
    level = logger.info if outcome.status < 500 else logger.error
    level("request done", extra={"status": outcome.status, **outcome.log})
    return outcome.http_response()


def _internal_error() -> dict[str, Any]:
    logger.exception("unhandled error")
    t = tm.Telemetry(version_dimensions(os.environ.get("MODEL_ID"), os.environ.get("PROMPT_ID")))
    t.add(tm.ERRORS, 1)
    publish(metrics, t)
    return core.error(
        500, "internal error; quote the request id", request_id=logger.get_correlation_id()
    ).http_response()


def _is_http_event(event: Any) -> bool:
    """The HTTP API v2 / function URL shape, down to the types of the fields the route reads."""
    ctx = event.get("requestContext") if isinstance(event, dict) else None
    if not (isinstance(ctx, dict) and isinstance(ctx.get("http"), dict)):
        return False
    http = ctx["http"]
    return (
        isinstance(http.get("method"), str)
        and bool(http["method"])
        and isinstance(event.get("headers"), dict | None)
        and isinstance(event.get("body"), str | None)
        and isinstance(event.get("isBase64Encoded", False), bool)
        and isinstance(event.get("rawPath"), str | None)
        and isinstance(http.get("path"), str | None)
        and isinstance(event.get("rawPath") or http.get("path"), str)
        and isinstance(ctx.get("stage"), str | None)
    )


# log_event stays off whatever POWERTOOLS_LOGGER_LOG_EVENT says: an event holds the unmasked question
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        if isinstance(event, dict) and DIRECT_KEY in event:
            return _respond(core.handle_direct(get_service(), event))
        if not _is_http_event(event):
            logger.warning("not an HTTP API v2 / function URL event", extra={"event_type": type(event).__name__})
            return core.error(
                400, "unsupported event: expected an HTTP API (payload 2.0) or function URL event"
            ).http_response()
        return _respond(route(APIGatewayProxyEventV2(event)))
    except Exception:  # a caller never sees a stack trace
        return _internal_error()
