"""Secrets Manager rotation of the request-signing key: one rotation step per invocation."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from evalgate.adapters import signing

logger = Logger()
_client: Any = None


def client() -> Any:
    global _client
    if _client is None:
        from evalgate.adapters.aws import ClientSettings, make_client

        _client = make_client("secretsmanager", ClientSettings.from_env(read_timeout=10.0, retry_mode="standard"))
    return _client


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    try:
        secret, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    except (KeyError, TypeError):
        logger.error(
            "not a Secrets Manager rotation event",
            extra={"keys": sorted(event)[:5] if isinstance(event, dict) else None},
        )
        raise ValueError("expected a Secrets Manager rotation event: SecretId, ClientRequestToken, Step") from None
    outcome = signing.rotate(client(), secret, token, step)
    logger.info("rotation step done", extra={"step": step, "outcome": outcome, "version": token})
    return {"step": step, "outcome": outcome}
