"""The FAQ desk's Lambda entry point (``faq_desk.handler.handler``): ``POST /ask`` and direct invocations."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from evalgate.adapters.lambda_runtime import new_metrics, publish, version_dimensions
from evalgate.contracts import telemetry as tm
from evalgate.contracts.records import DIRECT_KEY
from evalgate.contracts.service import BadAnswer, direct_invocation
from faq_desk.desk import Desk, Reply, refuse

metrics = new_metrics()
_desk: Desk | None = None
MAX_BODY = 64 * 1024


def desk() -> Desk:
    global _desk
    if _desk is None:
        _desk = Desk.from_env()
    return _desk


def _http(event: dict[str, Any]) -> Reply:
    http = event.get("requestContext", {}).get("http", {})
    path = str(event.get("rawPath") or http.get("path") or "")
    if path.rstrip("/") != "/ask":
        return refuse(404, f"no such route {path!r}: use POST /ask")
    if str(http.get("method", "")).upper() != "POST":
        return refuse(405, "use POST")
    raw = event.get("body") or ""
    if not isinstance(raw, str) or len(raw) > MAX_BODY * 2:
        return refuse(413 if isinstance(raw, str) else 400, "body too large or not text")
    try:
        body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode()
    except (binascii.Error, ValueError):
        return refuse(400, "body is flagged base64 but is not base64")
    headers = event.get("headers") if isinstance(event.get("headers"), dict) else None
    return desk().ask(body, headers)


def _direct(event: dict[str, Any]) -> Reply:
    try:
        inv = direct_invocation(event)
    except BadAnswer as exc:
        return refuse(400, str(exc))
    return desk().ask(json.dumps(inv.request).encode(), None, capture=False)  # replays are never captured


@metrics.log_metrics
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        if isinstance(event, dict) and DIRECT_KEY in event:
            reply = _direct(event)
        elif isinstance(event, dict) and isinstance(event.get("requestContext", {}).get("http"), dict):
            reply = _http(event)
        else:
            reply = refuse(400, "unsupported event: expected an HTTP API (payload 2.0) event")
    except Exception:  # never a stack trace to the caller
        t = tm.Telemetry(version_dimensions())
        t.add(tm.ERRORS, 1)
        reply = Reply(500, {"error": "internal error"}, t)
    publish(metrics, reply.telemetry)
    return reply.http()
