"""The signing key as read from Secrets Manager (requests checked against botocore's model with a Stubber)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from evalgate.adapters.signing import (
    Attribution,
    Keyring,
    SecretKeySource,
    SigningKey,
    SigningUnavailable,
    issue_request_id,
    verify_request_id,
)

SECRET = "evalgate-prod/request-signing"
CURRENT = {"SecretId": SECRET, "VersionStage": "AWSCURRENT"}
ATTR = Attribution("7", "m", "support/v1")


def stubbed() -> tuple[Any, Stubber]:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    return client, Stubber(client)


def version(value: str, created: datetime) -> dict[str, Any]:
    return {
        "ARN": f"arn:aws:secretsmanager:us-east-1:111111111111:secret:{SECRET}-AbCdEf",
        "Name": SECRET,
        "SecretString": value,
        "CreatedDate": created,
        "VersionId": "v" * 32,
    }


def test_current_and_previous_are_read_once_per_cache_period_with_their_creation_times() -> None:
    client, stub = stubbed()
    rotated = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    stub.add_response("get_secret_value", version("n" * 40, rotated), CURRENT)
    stub.add_response(
        "get_secret_value",
        version("o" * 40, datetime(2026, 11, 1, tzinfo=UTC)),
        {"SecretId": SECRET, "VersionStage": "AWSPREVIOUS"},
    )
    with stub:
        source = SecretKeySource(SECRET, max_age=300, grace_s=600, client=client)
        keys = source()
        assert source() == keys  # served from the Powertools cache: the stub would refuse a third call
    assert keys.current == SigningKey(b"n" * 40, rotated.timestamp())
    assert keys.previous is not None and keys.previous.secret == b"o" * 40
    old_id = issue_request_id(Keyring(keys.previous), ATTR, now=rotated.timestamp() - 60)
    assert not isinstance(verify_request_id(keys, old_id, 3600, now=rotated.timestamp() + 599), str)
    assert verify_request_id(keys, old_id, 3600, now=rotated.timestamp() + 601) == "signature"  # grace over


def test_a_secret_without_a_previous_version_is_fine_and_a_short_one_is_refused() -> None:
    client, stub = stubbed()
    now = datetime.now(UTC)
    stub.add_response("get_secret_value", version("x" * 40, now), CURRENT)
    stub.add_client_error(
        "get_secret_value",
        "ResourceNotFoundException",
        expected_params={"SecretId": SECRET, "VersionStage": "AWSPREVIOUS"},
    )
    stub.add_response("get_secret_value", version("short", now), {"SecretId": "other", "VersionStage": "AWSCURRENT"})
    stub.add_client_error(
        "get_secret_value",
        "ResourceNotFoundException",
        expected_params={"SecretId": "other", "VersionStage": "AWSPREVIOUS"},
    )
    with stub:
        assert SecretKeySource(SECRET, client=client)().previous is None
        with pytest.raises(SigningUnavailable, match=r"other.*at least 32 characters"):
            SecretKeySource("other", client=client)()


def test_a_failed_read_is_not_retried_on_every_request() -> None:
    client, stub = stubbed()

    class Counting:
        calls = 0

        def get_secret_value(self, **kw: Any) -> Any:
            Counting.calls += 1
            return client.get_secret_value(**kw)

    stub.add_client_error("get_secret_value", "AccessDeniedException", expected_params=CURRENT)
    with stub:
        source = SecretKeySource(SECRET, client=Counting())
        for _ in range(3):
            with pytest.raises(SigningUnavailable, match=f"{SECRET}: cannot read it"):
                source()
        stub.assert_no_pending_responses()
    assert Counting.calls == 1  # one call to Secrets Manager, then the failure is remembered for a while
