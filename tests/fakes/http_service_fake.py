"""A tiny loopback fake of the staging HTTP endpoint (the service's ``POST /ask``), for HttpCandidate tests.

Each call is answered by the next scripted ``Reply`` (``script()``), else by the default: HTTP 200 with
``{"answer": "You asked: <question>", "request_id": ..., "usage": {...}}``. ``latency`` delays every call;
``Reply.delay`` delays one. Received requests (path, headers, parsed JSON body) are recorded.

    with HttpServiceFake() as svc:
        svc.script(Reply(429, {"message": "slow down"}, headers={"Retry-After": "3"}))
        HttpCandidate(svc.url + "/ask").generate(...)
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], fake: HttpServiceFake) -> None:
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out close their sockets; that is expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without TCP_NODELAY, Nagle + the client's delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

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
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HttpServiceFake:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(self._addr, self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="http-service-fake", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with server.sockets_lock:
            for sock in list(server.open_sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HttpServiceFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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
