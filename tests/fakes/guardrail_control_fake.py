"""A loopback stand-in for Bedrock's guardrail control plane (``bedrock``, not ``bedrock-runtime``):
CreateGuardrail (``POST /guardrails``), CreateGuardrailVersion (``POST /guardrails/{id}``) and DeleteGuardrail
(``DELETE /guardrails/{id}``), with the status codes and members of botocore's service model. It keeps what was
created, so a runtime stand-in can decide ApplyGuardrail verdicts from the guardrail's actual configuration.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from tests.fakes.loopback import LoopbackHandler, LoopbackServer, ServerThread


class _Handler(LoopbackHandler):
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = self.server.fake.handle(method, self.path, raw)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            self.send_header("X-Amzn-ErrorType", "ServiceQuotaExceededException" if status == 400 else "NotFound")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


class GuardrailControlFake:
    def __init__(self) -> None:
        self.guardrails: dict[str, dict[str, Any]] = {}  # id -> the CreateGuardrail request
        self.versions: dict[str, list[str]] = {}
        self.deleted: list[str] = []
        self.fail_create_version = False
        self._lock = threading.Lock()
        self._thread: ServerThread | None = None

    def __enter__(self) -> GuardrailControlFake:
        self._thread = ServerThread(LoopbackServer(("127.0.0.1", 0), _Handler, self), "guardrail-control-fake")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._thread is not None
        self._thread.stop()

    @property
    def url(self) -> str:
        assert self._thread is not None
        return f"http://127.0.0.1:{self._thread.port}"

    def config(self, guardrail_id: str) -> dict[str, Any]:
        return self.guardrails[guardrail_id]

    def handle(self, method: str, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            parts = [p for p in path.split("?")[0].split("/") if p]
            if method == "POST" and parts == ["guardrails"]:
                gid = f"gr{len(self.guardrails) + 1:010d}"
                self.guardrails[gid] = json.loads(raw)
                return 202, {
                    "guardrailId": gid,
                    "guardrailArn": f"arn:aws:bedrock:us-east-1:111111111111:guardrail/{gid}",
                    "version": "DRAFT",
                    "createdAt": "2026-12-05T10:00:00Z",
                }
            if len(parts) == 2 and parts[0] == "guardrails" and parts[1] in self.guardrails:
                gid = parts[1]
                if method == "DELETE":
                    self.deleted.append(gid)
                    return 202, {}
                if self.fail_create_version:
                    return 400, {"message": "version quota exceeded"}
                version = str(len(self.versions.setdefault(gid, [])) + 1)
                self.versions[gid].append(version)
                return 202, {"guardrailId": gid, "version": version}
            return 404, {"message": f"no route {method} {path}"}
