"""A loopback stand-in for the parts of GitHub's REST API evalgate uses: commit → pull requests, commit statuses,
issue comments (list / create / update), issues (list by label / create). It keeps state like GitHub does, checks
the ``Authorization: Bearer`` header (401 otherwise), and can be scripted to answer the next calls with a
status (rate limit 403/429 with headers, 5xx) before serving them normally.

    with GitHubFake(token="t") as gh:
        gh.add_pull(7, head_sha="abc", fork=False)
        GitHubClient("org/repo", "t", api_url=gh.url)...
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import LoopbackHandler, LoopbackServer, ServerThread

REPO = "example-org/evalgate"


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted"


class _Handler(LoopbackHandler):
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, body, headers = self.server.fake.handle(method, self.path, dict(self.headers.items()), raw)
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")


class GitHubFake:
    def __init__(self, token: str = "test-token", repo: str = REPO) -> None:
        self.token = token
        self.repo = repo
        self.pulls: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.issues: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.script: deque[Scripted] = deque()
        self._next_id = 1000
        self._lock = threading.Lock()
        self._thread: ServerThread | None = None

    def __enter__(self) -> GitHubFake:
        self._thread = ServerThread(LoopbackServer(("127.0.0.1", 0), _Handler, self), "github-fake")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._thread is not None
        self._thread.stop()

    @property
    def url(self) -> str:
        assert self._thread is not None
        return f"http://127.0.0.1:{self._thread.port}"

    def add_pull(self, number: int, head_sha: str, fork: bool = False, state: str = "open") -> None:
        head_repo = "someone-else/evalgate" if fork else self.repo
        self.pulls.append(
            {
                "number": number,
                "state": state,
                "head": {"sha": head_sha, "ref": f"feature-{number}", "repo": {"full_name": head_repo}},
                "base": {"ref": "main", "repo": {"full_name": self.repo}},
            }
        )
        self.comments.setdefault(number, [])

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append((method, path, headers))
            if self.script:
                s = self.script.popleft()
                return s.status, {"message": s.message}, s.headers
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"message": "Bad credentials"}, {}
            body = json.loads(raw) if raw else None
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        prefix = f"/repos/{self.repo}"
        if not parts.path.startswith(prefix):
            return 404, {"message": "Not Found"}, {}
        rest = parts.path[len(prefix) :]
        if m := re.fullmatch(r"/commits/(\w+)/pulls", rest):
            return 200, [p for p in self.pulls if p["head"]["sha"] == m.group(1)], {}
        if m := re.fullmatch(r"/statuses/(\w+)", rest):
            if body.get("state") not in {"error", "failure", "pending", "success"}:
                return 422, {"message": "Validation Failed"}, {}
            self.statuses.append({"sha": m.group(1), **body})
            return 201, body, {}
        if m := re.fullmatch(r"/issues/(\d+)/comments", rest):
            number = int(m.group(1))
            if method == "GET":
                page, per = int(query.get("page", ["1"])[0]), int(query.get("per_page", ["30"])[0])
                items = self.comments.get(number, [])
                return 200, items[(page - 1) * per : page * per], {}
            comment = {"id": self._id(), "body": body["body"]}
            self.comments.setdefault(number, []).append(comment)
            return 201, comment, {}
        if m := re.fullmatch(r"/issues/comments/(\d+)", rest):
            for items in self.comments.values():
                for c in items:
                    if c["id"] == int(m.group(1)):
                        c["body"] = body["body"]
                        return 200, c, {}
            return 404, {"message": "Not Found"}, {}
        if rest == "/issues":
            if method == "GET":
                label = query.get("labels", [""])[0]
                found = [i for i in self.issues if label in [lb["name"] for lb in i["labels"]] and i["state"] == "open"]
                return 200, found, {}
            issue = {
                "number": self._id(),
                "title": body["title"],
                "body": body["body"],
                "state": "open",
                "labels": [{"name": n} for n in body.get("labels", [])],
            }
            self.issues.append(issue)
            self.comments[issue["number"]] = []
            return 201, issue, {}
        return 404, {"message": "Not Found"}, {}
