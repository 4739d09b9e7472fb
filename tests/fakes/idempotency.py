"""The idempotency table of the stacks (Powertools layout: key ``id``, TTL ``expiration``) in moto DynamoDB."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

TABLE = "evalgate-idempotency"


def create_idempotency_table(monkeypatch: pytest.MonkeyPatch, region: str = "us-east-1") -> Any:
    """Create the table (call inside ``mock_aws``), point ``IDEMPOTENCY_TABLE`` at it, return a DynamoDB client."""
    ddb = boto3.client("dynamodb", region_name=region)
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    ddb.update_time_to_live(TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"})
    monkeypatch.setenv("IDEMPOTENCY_TABLE", TABLE)
    return ddb


def records(ddb: Any) -> list[dict[str, Any]]:
    return list(ddb.scan(TableName=TABLE)["Items"])
