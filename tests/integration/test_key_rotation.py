"""Rotation of the request-signing key: the four Secrets Manager steps, and what the service sees afterwards.

Against moto Secrets Manager. RotateSecret itself needs the rotation Lambda to run (moto would run it in Docker),
so the one thing it does before calling the function — stage the new version id as AWSPENDING without a value —
is reproduced by a thin wrapper around the moto client; every other call is moto's. The call shapes are also
pinned with botocore's Stubber (validated against the service model).
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from evalgate.adapters.signing import (
    ROTATION_STEPS,
    Attribution,
    RotationError,
    SecretKeySource,
    issue_request_id,
    rotate,
    verify_request_id,
)

NAME = "evalgate-prod/request-signing"


class PendingStaged:
    """The moto client, with the new version id staged as AWSPENDING the way RotateSecret stages it."""

    def __init__(self, client: Any, token: str) -> None:
        self._client, self._token = client, token

    def describe_secret(self, **kw: Any) -> Any:
        meta = self._client.describe_secret(**kw)
        meta.setdefault("VersionIdsToStages", {}).setdefault(self._token, ["AWSPENDING"])
        return meta

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@mock_aws
def test_a_rotation_makes_a_new_current_key_and_keeps_the_old_one_verifying_for_the_grace_period() -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    sm.create_secret(Name=NAME, SecretString="o" * 64)
    before = SecretKeySource(NAME, client=sm)()
    old_id = issue_request_id(before, Attribution("41", "m", "support/v1"))

    token = str(uuid.uuid4())
    client = PendingStaged(sm, token)
    outcomes = [rotate(client, NAME, token, step) for step in ROTATION_STEPS]
    assert outcomes == [
        "pending key created",
        "nothing to set: the key is only used by this stage's service and tools",
        "pending key usable",
        "pending key is now current",
    ]
    assert rotate(client, NAME, token, "createSecret") == "already current"  # a redelivered step changes nothing

    after = SecretKeySource(NAME, client=sm, grace_s=7200)()
    assert after.current.secret != before.current.secret and len(after.current.secret) == 64
    assert after.previous is not None and after.previous.secret == before.current.secret
    assert not isinstance(verify_request_id(after, old_id, 3600), str)  # within the grace period
    late = after.current.created + 7201
    assert (
        verify_request_id(after, issue_request_id(before, Attribution("41", "m", "v"), now=late - 60), 3600, now=late)
        == "signature"
    )


@mock_aws
def test_create_is_idempotent_and_steps_refuse_a_version_not_pending() -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    sm.create_secret(Name=NAME, SecretString="o" * 64)
    token = str(uuid.uuid4())
    client = PendingStaged(sm, token)
    assert rotate(client, NAME, token, "createSecret") == "pending key created"
    first = sm.get_secret_value(SecretId=NAME, VersionStage="AWSPENDING")["SecretString"]
    assert rotate(client, NAME, token, "createSecret") == "pending key exists"
    assert sm.get_secret_value(SecretId=NAME, VersionStage="AWSPENDING")["SecretString"] == first
    with pytest.raises(RotationError, match="has no stage for rotation"):
        rotate(sm, NAME, str(uuid.uuid4()), "createSecret")
    with pytest.raises(RotationError, match="unknown rotation step"):
        rotate(client, NAME, token, "finish")


def test_the_calls_match_the_secrets_manager_model() -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    token, current = "t" * 32, "c" * 32
    staged = {"VersionIdsToStages": {token: ["AWSPENDING"], current: ["AWSCURRENT"]}}
    with Stubber(sm) as stub:
        stub.add_response("describe_secret", staged, {"SecretId": NAME})
        stub.add_client_error(
            "get_secret_value",
            "ResourceNotFoundException",
            expected_params={"SecretId": NAME, "VersionId": token, "VersionStage": "AWSPENDING"},
        )
        stub.add_response(
            "get_random_password",
            {"RandomPassword": "r" * 64},
            {"PasswordLength": 64, "ExcludePunctuation": True, "IncludeSpace": False},
        )
        stub.add_response(
            "put_secret_value",
            {},
            {"SecretId": NAME, "ClientRequestToken": token, "SecretString": "r" * 64, "VersionStages": ["AWSPENDING"]},
        )
        stub.add_response("describe_secret", staged, {"SecretId": NAME})
        stub.add_response(
            "update_secret_version_stage",
            {},
            {"SecretId": NAME, "VersionStage": "AWSCURRENT", "MoveToVersionId": token, "RemoveFromVersionId": current},
        )
        assert rotate(sm, NAME, token, "createSecret") == "pending key created"
        assert rotate(sm, NAME, token, "finishSecret") == "pending key is now current"
        stub.assert_no_pending_responses()


def test_the_rotation_handler_runs_one_step_per_event(monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers import key_rotation as h
    from tests.fakes.aws_lambda import context_factory

    calls: list[tuple[str, str, str]] = []
    monkeypatch.setattr(h.signing, "rotate", lambda c, s, t, step: calls.append((s, t, step)) or "done")
    monkeypatch.setattr(h, "_client", object())
    ctx = context_factory("key-rotation", remaining_ms=30_000, memory_mb=256)()
    event = {
        "SecretId": f"arn:aws:secretsmanager:us-east-1:111111111111:secret:{NAME}-AbCdEf",
        "ClientRequestToken": "t" * 32,
        "Step": "testSecret",
    }
    assert h.handler(event, ctx) == {"step": "testSecret", "outcome": "done"}
    assert calls == [(event["SecretId"], "t" * 32, "testSecret")]
    with pytest.raises(ValueError, match="Secrets Manager rotation event"):
        h.handler({"Step": "createSecret"}, ctx)
