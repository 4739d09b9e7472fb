"""A Lambda function version or alias as the candidate: synchronous ``Invoke`` with an HTTP API (v2) event.

The service handler takes the API Gateway HTTP API payload format 2.0; this adapter sends exactly that shape
(``POST /ask`` with the service contract's ``ask_body``) and reads the handler's response (``read_response``:
an HTTP API response or a bare JSON object) as the contract's ``AnswerDocument``
(``evalgate.contracts.service``). ``synthetic`` adds the signed header that marks the project's own
traffic (``evalgate.adapters.signing``); without it the service treats the request as a user's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from evalgate.adapters.aws import ClientSettings, make_client, map_aws_error, model_client_settings
from evalgate.contracts.service import BadAnswer, ask_body, parse_answer, read_response
from evalgate.core.errors import ProviderError, ThrottledError
from evalgate.core.models import Case, Generation, KnowledgeEntry
from evalgate.core.ports import client_ttft_ms, service_total_ms, service_ttft_ms

LAMBDA_THROTTLING = frozenset({"TooManyRequestsException", "EC2ThrottledException", "ResourceNotReadyException"})
BODY_THROTTLE_STATUS = frozenset({429, 503})


def _snippet(raw: bytes | str, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_version(qualifier: str | None) -> bool:
    return qualifier is None or qualifier == "$LATEST" or qualifier.isdigit()


class LambdaCandidate:
    """The service Lambda (a published version or an alias) invoked directly, RequestResponse.

    ``identity()`` holds the function and qualifier, plus the version that actually executed once an
    invocation has reported it (``executed_version``). With ``resolve_alias=True`` an alias qualifier is
    resolved to its version (``GetAlias``) the first time ``identity()`` is asked, so answers are cached per
    immutable version rather than per movable alias.
    """

    live = True

    def __init__(
        self,
        function_name: str,
        qualifier: str | None = None,
        *,
        path: str = "/ask",
        resolve_alias: bool = False,
        service_timing: bool = False,
        name: str | None = None,
        client: Any = None,
        settings: ClientSettings | None = None,
        synthetic: Callable[[bytes], dict[str, str]] | None = None,
    ) -> None:
        self.synthetic = synthetic
        if not function_name:
            raise ValueError("function_name is required")
        # True: time to first token and total answer time as the function measured them (answer document
        # ``latency``: no invoke overhead, no cold start), what its TimeToFirstToken and Latency metrics see;
        # False: as this client saw them.
        self.service_timing = service_timing
        self.function_name = function_name
        self.qualifier = qualifier or None
        self.path = path
        self.resolve_alias = resolve_alias
        self.name = name or f"lambda:{function_name}" + (f":{qualifier}" if qualifier else "")
        self.executed_version: str | None = None
        self._alias_version: str | None = None
        self._client = client if client is not None else make_client("lambda", settings or model_client_settings())

    @property
    def _what(self) -> str:
        return f"lambda {self.function_name}" + (f":{self.qualifier}" if self.qualifier else "")

    def identity(self) -> dict[str, Any]:
        if self.resolve_alias and not _is_version(self.qualifier) and self._alias_version is None:
            try:
                alias = self._client.get_alias(FunctionName=self.function_name, Name=self.qualifier)
            except Exception as exc:
                raise map_aws_error(exc, self._what, LAMBDA_THROTTLING) from exc
            self._alias_version = str(alias["FunctionVersion"])
        version = self.qualifier if _is_version(self.qualifier) and self.qualifier else None
        return {
            "kind": "lambda",
            "function_name": self.function_name,
            "qualifier": self.qualifier,
            "version": version or self._alias_version,
            "executed_version": self.executed_version,
        }

    def event(self, case: Case, repeat: int) -> dict[str, Any]:
        body = ask_body(case.question, f"evalgate-{case.id}-{repeat}", case.turns, case.untrusted_context)
        raw = json.dumps(body)
        headers = {"content-type": "application/json", "user-agent": "evalgate"}
        if self.synthetic is not None:
            try:
                headers.update(self.synthetic(raw.encode()))
            except Exception as exc:
                raise ProviderError(f"{self._what}: cannot sign the synthetic-traffic header: {exc}") from exc
        return {
            "version": "2.0",
            "routeKey": f"POST {self.path}",
            "rawPath": self.path,
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "http": {"method": "POST", "path": self.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
                "requestId": f"evalgate-{case.id}-{repeat}",
                "routeKey": f"POST {self.path}",
                "stage": "$default",
            },
            "body": raw,
            "isBase64Encoded": False,
        }

    def generate(self, case: Case, knowledge: list[KnowledgeEntry], repeat: int) -> Generation:
        kwargs: dict[str, Any] = {
            "FunctionName": self.function_name,
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(self.event(case, repeat)).encode(),
        }
        if self.qualifier:
            kwargs["Qualifier"] = self.qualifier
        start = time.monotonic()
        try:
            response = self._client.invoke(**kwargs)
            raw = response["Payload"].read()
        except Exception as exc:
            raise map_aws_error(exc, self._what, LAMBDA_THROTTLING) from exc
        latency_ms = (time.monotonic() - start) * 1000.0
        if response.get("ExecutedVersion"):
            self.executed_version = str(response["ExecutedVersion"])
        status = int(response.get("StatusCode") or 0)
        if response.get("FunctionError"):
            raise ProviderError(f"{self._what}: function error ({response['FunctionError']}): {_snippet(raw)}")
        if status != 200:
            raise ProviderError(f"{self._what}: invoke returned status {status}: {_snippet(raw)}")
        answer_doc = self._answer_document(raw)
        try:
            doc = parse_answer(answer_doc)
        except BadAnswer as exc:
            raise ProviderError(f"{self._what}: response is not an answer document ({exc}): {_snippet(raw)}") from None
        return Generation(
            case_id=case.id,
            repeat=repeat,
            output=doc.answer,
            latency_ms=(service_total_ms(answer_doc) or latency_ms) if self.service_timing else latency_ms,
            ttft_ms=service_ttft_ms(answer_doc) if self.service_timing else client_ttft_ms(answer_doc, latency_ms),
            input_tokens=doc.usage.inputTokens,
            output_tokens=doc.usage.outputTokens,
            model_id=doc.model_id,
            prompt_version=doc.prompt_version,
            guardrail_intervened=doc.guardrail_intervened,
        )

    def _answer_document(self, raw: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(raw)
        except ValueError:
            raise ProviderError(f"{self._what}: response is not JSON: {_snippet(raw)}") from None
        if not isinstance(payload, dict):
            raise ProviderError(f"{self._what}: response is not a JSON object: {_snippet(raw)}")
        try:
            status, doc, text = read_response(payload)
        except BadAnswer as exc:
            raise ProviderError(f"{self._what}: {exc}") from None
        if not 200 <= status < 300:
            message = f"{self._what}: handler returned statusCode {status}: {_snippet(text)}"
            if status in BODY_THROTTLE_STATUS:
                raise ThrottledError(message)
            raise ProviderError(message)
        if doc is None:
            raise ProviderError(f"{self._what}: body is not JSON: {_snippet(text)}")
        if not isinstance(doc, dict):
            raise ProviderError(f"{self._what}: body is not a JSON object: {_snippet(text)}")
        return doc
