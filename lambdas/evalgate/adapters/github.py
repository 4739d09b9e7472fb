"""GitHub REST API, for what the pipeline tells a pull request: a commit status, one comment, issues for known errors.

``GITHUB_API_URL`` (default ``https://api.github.com``; GitHub Enterprise sets its own) picks the endpoint. The
token comes from Secrets Manager at run time (``token_from_secret``) or ``GITHUB_TOKEN``; it is sent only in the
``Authorization`` header and never logged. Rate-limit answers (429, or 403 with ``x-ratelimit-remaining: 0``)
and 5xx are retried a few times, waiting as ``Retry-After`` / ``x-ratelimit-reset`` say (bounded); anything
else raises ``GitHubError`` with the status and GitHub's message.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_API = "https://api.github.com"
API_VERSION = "2022-11-28"


class GitHubError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"GitHub API {status or 'unreachable'}: {message}")
        self.status = status


@dataclass
class GitHubClient:
    repo: str  # owner/name
    token: str
    api_url: str = field(default_factory=lambda: os.environ.get("GITHUB_API_URL") or DEFAULT_API)
    timeout: float = 15.0
    attempts: int = 4
    max_wait_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.repo.count("/") != 1 or not all(self.repo.split("/")):
            raise ValueError(f"repository must be owner/name, got {self.repo!r}")

    # ------------------------------------------------------------------------------------------ transport

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.api_url.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "evalgate",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(1, self.attempts + 1):
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                text = exc.read().decode("utf-8", errors="replace")
                wait = self._retry_wait(exc.code, exc.headers)
                if wait is None or attempt == self.attempts:
                    raise GitHubError(exc.code, _message(text)) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                if attempt == self.attempts:
                    raise GitHubError(None, str(getattr(exc, "reason", exc))) from None
                wait = min(self.max_wait_s, 2.0**attempt)
            self.sleep(wait)
        raise GitHubError(None, "no attempts made")

    def _retry_wait(self, status: int, headers: Any) -> float | None:
        limited = status == 429 or (status == 403 and str(headers.get("x-ratelimit-remaining", "")) == "0")
        if not limited and status < 500:
            return None
        retry_after = headers.get("Retry-After")
        if retry_after is not None:
            try:
                return min(self.max_wait_s, max(0.0, float(retry_after)))
            except ValueError:
                pass
        reset = headers.get("x-ratelimit-reset")
        if limited and reset is not None:
            try:
                return min(self.max_wait_s, max(0.0, float(reset) - self.clock()))
            except ValueError:
                pass
        return min(self.max_wait_s, 1.0)

    # ------------------------------------------------------------------------------------------ API

    def pulls_for_commit(self, sha: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/repos/{self.repo}/commits/{sha}/pulls") or [])

    def set_status(self, sha: str, state: str, description: str, target_url: str | None, context: str) -> None:
        body: dict[str, Any] = {"state": state, "description": description[:140], "context": context}
        if target_url:
            body["target_url"] = target_url
        self.request("POST", f"/repos/{self.repo}/statuses/{sha}", body)

    def issue_comments(self, number: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, 21):  # 2,000 comments at most
            batch = self.request("GET", f"/repos/{self.repo}/issues/{number}/comments?per_page=100&page={page}") or []
            out += batch
            if len(batch) < 100:
                break
        return out

    def upsert_comment(self, number: int, body: str, marker: str) -> tuple[str, int]:
        """Update the comment that carries ``marker`` (ours), or create it. Returns (created|updated, comment id)."""
        mine = [c for c in self.issue_comments(number) if marker in str(c.get("body", ""))]
        if mine:
            cid = int(mine[0]["id"])
            self.request("PATCH", f"/repos/{self.repo}/issues/comments/{cid}", {"body": body})
            return "updated", cid
        made = self.request("POST", f"/repos/{self.repo}/issues/{number}/comments", {"body": body})
        return "created", int(made["id"])

    def open_issues(self, label: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"labels": label, "state": "open", "per_page": 100})
        return [i for i in self.request("GET", f"/repos/{self.repo}/issues?{q}") or [] if "pull_request" not in i]

    def create_issue(self, title: str, body: str, labels: list[str]) -> dict[str, Any]:
        return dict(
            self.request("POST", f"/repos/{self.repo}/issues", {"title": title, "body": body, "labels": labels})
        )

    def comment_issue(self, number: int, body: str) -> None:
        self.request("POST", f"/repos/{self.repo}/issues/{number}/comments", {"body": body})


def _message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    return str(data.get("message", text))[:200] if isinstance(data, dict) else text[:200]


def token_from_secret(secret_id: str, client: Any = None) -> str:
    """The token stored in Secrets Manager: the secret string itself, or its ``token`` field when it is JSON."""
    if client is None:
        from evalgate.adapters.aws import make_client

        client = make_client("secretsmanager")
    value = str(client.get_secret_value(SecretId=secret_id).get("SecretString") or "")
    try:
        data = json.loads(value)
    except ValueError:
        return value.strip()
    return str(data.get("token", "")).strip() if isinstance(data, dict) else value.strip()
