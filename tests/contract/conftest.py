"""Contract tests: AWS's own request models and sample events stand in for the account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .recorder import AwsRecorder

EVENTS = Path(__file__).resolve().parent / "events"


def doc_event(name: str) -> dict[str, Any]:
    """A sample event from AWS documentation (see events/SOURCES.md)."""
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return data


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsRecorder]:
    # Every retried handler records what it has done in its idempotency table (Powertools Idempotency on DynamoDB):
    # a first delivery writes its record (PutItem succeeds) and saves the outcome (UpdateItem).
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "evalgate-prod-idempotency")
    recorder = AwsRecorder()
    for operation in ("PutItem", "UpdateItem", "DeleteItem"):
        recorder.respond("dynamodb", operation, {})
    yield from recorder.install(monkeypatch)


@pytest.fixture
def aws_passthrough(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsRecorder]:
    """Checks and records every request, then lets the test's own backend (moto, Stubber) answer it."""
    yield from AwsRecorder().install(monkeypatch, passthrough=True)


# the synthesized app (one synth per session), shared with the infra tests
from tests.infra.conftest import synth  # noqa: E402,F401
