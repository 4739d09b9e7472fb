"""A tiny loopback fake of the staging HTTP endpoint (the service's ``POST /ask``), for HttpCandidate tests.

Each call is answered by the next scripted ``Reply`` (``script()``), else by the default: HTTP 200 with
``{"answer": "You asked: <question>", "request_id": ..., "usage": {...}}``. ``latency`` delays every call;
``Reply.delay`` delays one. Received requests (path, headers, parsed JSON body) are recorded.

    with HttpServiceFake() as svc:
        svc.script(Reply(429, {"message": "slow down"}, headers={"Retry-After": "3"}))
        HttpCandidate(svc.url + "/ask").generate(...)
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.loopback import LoopbackHandler, LoopbackServer, ServerThread


@dataclass(frozen=True)
class Reply:
    """One scripted response. ``body`` is JSON-encoded unless it is ``bytes`` (sent as-is)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    json: Any


class _Handler(LoopbackHandler):
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.fake._handle(ReceivedRequest("POST", self.path, headers, raw, _parse(raw)))
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            sent = {k.lower() for k in reply.headers}
            if "content-type" not in sent:
                self.send_header("Content-Type", "application/json")
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class HttpServiceFake:
    def __init__(self, *, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.latency = latency
        self._addr = (host, port)
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self.requests: list[ReceivedRequest] = []
        self._stopping = threading.Event()
        self._server: ServerThread | None = None

    def start(self) -> HttpServiceFake:
        if self._server is None:
            self._stopping.clear()
            self._server = ServerThread(LoopbackServer(self._addr, _Handler, self), "http-service-fake")
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.stop()

    def __enter__(self) -> HttpServiceFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not running")
        return f"http://127.0.0.1:{self._server.port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _handle(self, req: ReceivedRequest) -> Reply:
        with self._lock:
            self.requests.append(req)
            n = len(self.requests)
            reply = self._queue.popleft() if self._queue else None
        if reply is None:
            question = req.json.get("question", "") if isinstance(req.json, dict) else ""
            reply = Reply(
                200,
                {
                    "answer": f"You asked: {question}",
                    "request_id": f"req-{n:06d}",
                    "usage": {
                        "inputTokens": len(str(question).split()),
                        "outputTokens": 2 + len(str(question).split()),
                    },
                },
            )
        wait = self.latency + reply.delay
        if wait > 0:
            self._stopping.wait(wait)
        return reply
