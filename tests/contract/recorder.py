"""Stands in for the AWS account at the boto3 boundary: every request any boto3 client makes (ours, Powertools')
is validated with ``botocore.validate.validate_parameters`` against the service model botocore ships, recorded,
and answered from a table of canned responses. Nothing is sent anywhere."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import botocore.client
from botocore.exceptions import ParamValidationError
from botocore.response import StreamingBody
from botocore.validate import validate_parameters

Response = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


def body(data: bytes | str | dict[str, Any]) -> StreamingBody:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data.encode() if isinstance(data, str) else data
    return StreamingBody(io.BytesIO(raw), len(raw))


@dataclass
class Call:
    service: str  # botocore service name: "lambda", "bedrock-runtime", "s3", ...
    operation: str  # API operation name: "Invoke", "Converse", "PutObject", ...
    params: dict[str, Any]


@dataclass
class AwsRecorder:
    responses: dict[tuple[str, str], Response] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    # None: answer from ``responses``; else the original ``_make_api_call`` (moto, Stubber) answers after the check
    passthrough: Callable[..., dict[str, Any]] | None = None

    def respond(self, service: str, operation: str, response: Response) -> None:
        self.responses[(service, operation)] = response

    def operations(self) -> set[tuple[str, str]]:
        return {(c.service, c.operation) for c in self.calls}

    def of(self, service: str, operation: str) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if (c.service, c.operation) == (service, operation)]

    def _make_api_call(self, client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        model = client.meta.service_model
        service = model.service_name
        try:
            validate_parameters(params, model.operation_model(operation).input_shape)
        except ParamValidationError as exc:
            self.invalid.append(f"{service}.{operation}: {exc}")
            raise
        try:
            recorded = copy.deepcopy(params)
        except TypeError:  # a streaming body (s3transfer's file chunk) cannot be copied: keep the references
            recorded = dict(params)
        self.calls.append(Call(service, operation, recorded))
        if self.passthrough is not None:
            return self.passthrough(client, operation, params)
        response = self.responses.get((service, operation), {})
        out = response(params) if callable(response) else copy.deepcopy(response)
        return {"ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "contract"}, **out}

    def install(self, monkeypatch: Any, *, passthrough: bool = False) -> Iterator[AwsRecorder]:
        recorder = self
        if passthrough:
            self.passthrough = botocore.client.BaseClient._make_api_call

        def make_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> dict[str, Any]:
            return recorder._make_api_call(client, operation_name, api_params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
        yield self
