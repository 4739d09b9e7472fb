"""Lambda test doubles shared by the handler tests: a context object and a loopback Lambda Invoke API."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.loopback import LoopbackHandler, LoopbackServer, ServerThread


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    remaining_ms: int = 120_000
    memory_limit_in_mb: int = 512
    aws_request_id: str = "6c2e3b8f-0000-4000-8000-000000000000"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def context_factory(function_name: str, remaining_ms: int = 120_000, memory_mb: int = 512) -> Callable[..., Any]:
    """``Ctx()`` for one handler under test, with per-call overrides (``Ctx(remaining_ms=11_000)``)."""

    def make(**overrides: Any) -> LambdaContext:
        base: dict[str, Any] = {
            "function_name": function_name,
            "remaining_ms": remaining_ms,
            "memory_limit_in_mb": memory_mb,
        }
        return LambdaContext(**{**base, **overrides})

    return make


class LambdaInvokeFake:
    """Loopback ``POST /2015-03-31/functions/{name}/invocations``: runs ``handler`` in-process, or answers a
    scripted AWS error from ``errors`` ((status, error code) pairs, consumed first). Point boto3 at it with
    ``AWS_ENDPOINT_URL_LAMBDA=fake.url``. ``calls`` records function, qualifier, invocation type and payload.
    ``GET /2015-03-31/functions/{name}/aliases/{alias}`` (GetAlias) answers from ``aliases`` (alias -> version),
    404 ResourceNotFoundException otherwise; ``alias_reads`` counts them."""

    def __init__(self, handler: Callable[[Any, Any], Any], executed_version: str | None = None) -> None:
        self.handler = handler
        self.executed_version = executed_version
        self.calls: list[dict[str, Any]] = []
        self.errors: list[tuple[int, str]] = []
        self.aliases: dict[str, str] = {}
        self.alias_reads = 0
        fake = self

        class Handler(LoopbackHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                m = re.match(r"^/2015-03-31/functions/([^/]+)/aliases/([^/]+)$", url.path)
                fake.alias_reads += 1
                alias = urllib.parse.unquote(m.group(2)) if m else ""
                if not m or alias not in fake.aliases:
                    body = json.dumps({"Type": "User", "message": "Alias not found"}).encode()
                    self._send(404, body, {"x-amzn-ErrorType": "ResourceNotFoundException"})
                    return
                name = urllib.parse.unquote(m.group(1))
                doc = {
                    "AliasArn": f"arn:aws:lambda:us-east-1:123456789012:function:{name}:{alias}",
                    "Name": alias,
                    "FunctionVersion": fake.aliases[alias],
                    "RevisionId": "r-1",
                }
                self._send(200, json.dumps(doc).encode(), {})

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                m = re.match(r"^/2015-03-31/functions/([^/]+)/invocations$", url.path)
                if not m:
                    self._send(404, b'{"message":"no route"}', {})
                    return
                name = urllib.parse.unquote(m.group(1))
                qualifier = urllib.parse.parse_qs(url.query).get("Qualifier", [None])[0]
                payload = json.loads(raw)
                fake.calls.append(
                    {
                        "function": name,
                        "qualifier": qualifier,
                        "type": self.headers.get("X-Amz-Invocation-Type"),
                        "payload": payload,
                    }
                )
                if fake.errors:
                    status, code = fake.errors.pop(0)
                    body = json.dumps({"Type": "User", "message": code}).encode()
                    self._send(status, body, {"x-amzn-ErrorType": code})
                    return
                result = fake.handler(payload, LambdaContext(function_name=name))
                version = fake.executed_version or qualifier or "$LATEST"
                self._send(200, json.dumps(result).encode(), {"X-Amz-Executed-Version": version})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ServerThread(LoopbackServer(("127.0.0.1", 0), Handler, self), "lambda-invoke-fake")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def close(self) -> None:
        self._server.stop()

    def __enter__(self) -> LambdaInvokeFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
