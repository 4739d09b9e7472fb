"""One answer, one vote: the ledger that records feedback once per request id and kind.

A DynamoDB table keyed by ``<request id's unique part>#<kind>`` (kind = ``rating`` or ``converted``). The first
vote is a conditional ``PutItem`` (``attribute_not_exists``) that succeeds; every repeat fails the condition and
is acknowledged without being counted. Items carry a TTL (``expires_at``, epoch seconds) set past the end of
the feedback window, after which the id itself is refused, so the table holds only votes that still matter.
A ledger that cannot be reached fails closed: the vote is refused (503), never counted unrecorded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, Protocol

TABLE_ENV = "FEEDBACK_TABLE"
KEY = "pk"
TTL_ATTRIBUTE = "expires_at"

Kind = Literal["rating", "converted"]


class LedgerUnavailable(Exception):
    """The ledger could not record the vote (throttled, unreachable, no permission)."""


class FeedbackLedger(Protocol):
    def record_once(self, unique: str, kind: Kind, expires_at: int) -> bool:
        """True for the first vote of this kind on this answer, False for a repeat."""
        ...


class DynamoFeedbackLedger:
    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table_name = table_name
        self._client = client

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DynamoFeedbackLedger | None:
        env = os.environ if env is None else env
        name = env.get(TABLE_ENV, "").strip()
        return cls(name) if name else None

    @property
    def client(self) -> Any:
        if self._client is None:
            from evalgate.adapters.aws import ClientSettings, make_client

            self._client = make_client(
                "dynamodb",
                ClientSettings.from_env(connect_timeout=2.0, read_timeout=3.0, max_attempts=3, retry_mode="standard"),
            )
        return self._client

    def record_once(self, unique: str, kind: Kind, expires_at: int) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={KEY: {"S": f"{unique}#{kind}"}, TTL_ATTRIBUTE: {"N": str(int(expires_at))}},
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": KEY},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return False
            raise LedgerUnavailable(f"feedback table {self.table_name}: {code}") from exc
        except BotoCoreError as exc:
            raise LedgerUnavailable(f"feedback table {self.table_name}: {type(exc).__name__}") from exc
        return True
